package dev.kvq.generate;

import dev.kvq.config.Placement;
import dev.kvq.generate.spi.Decoder;

import dev.kvq.cache.KvCache;
import dev.kvq.cache.quantized.CacheSpec;
import dev.kvq.cache.quantized.FullPrecisionKvCache;
import dev.kvq.config.ModelShape;
import dev.kvq.config.PrecisionPlan;

/** Makes one KV cache per sequence: full precision, or quantized under a validated {@link CacheSpec}. */
public interface CacheFactory {
    KvCache newCache();

    /** The precision plan, or null for the full-precision cache. */
    PrecisionPlan plan();

    /** One line: "fp32" or the configuration's gist. */
    String describe();

    /** Where the caches live ({@code placement} of the configuration; the full-precision cache stays on the host). */
    default Placement placement() {
        return Placement.HOST;
    }

    /** A session over {@code batch} new caches of this factory, placed as {@link #placement()} says. */
    default DecodeSession session(Decoder decoder, int batch) {
        java.util.List<KvCache> list = new java.util.ArrayList<>(batch);
        for (int i = 0; i < batch; i++) {
            list.add(newCache());
        }
        try {
            return new DecodeSession(decoder, list, placement());
        } catch (RuntimeException e) {
            list.forEach(KvCache::close);
            throw e;
        }
    }

    static CacheFactory fullPrecision(ModelShape shape) {
        return fullPrecision(shape, Placement.HOST);
    }

    /**
     * The full-precision cache; under placement device it is kept where the model runs in the model's K/V dtype
     * (the baseline a quantized device cache is measured against).
     */
    static CacheFactory fullPrecision(ModelShape shape, Placement placement) {
        return new CacheFactory() {
            @Override
            public Placement placement() {
                return placement;
            }

            @Override
            public KvCache newCache() {
                return new FullPrecisionKvCache(shape);
            }

            @Override
            public PrecisionPlan plan() {
                return null;
            }

            @Override
            public String describe() {
                return "full precision (float32)";
            }
        };
    }

    static CacheFactory quantized(CacheSpec spec) {
        return new CacheFactory() {
            @Override
            public KvCache newCache() {
                return spec.newCache();
            }

            @Override
            public PrecisionPlan plan() {
                return spec.plan();
            }

            @Override
            public Placement placement() {
                return spec.config().placement();
            }

            @Override
            public String describe() {
                var c = spec.config();
                return String.format("%s %s, K%.2f/V%.2f bits, axes %d/%d, group %d, residual %d", spec.backend().name(),
                        c.policy().id(), spec.plan().averageKeyBits(), spec.plan().averageValueBits(), c.axisKey(),
                        c.axisValue(), c.groupSize(), c.residualLength());
            }
        };
    }
}
