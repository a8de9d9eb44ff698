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

    /**
     * Exactly the bytes one cache of this factory holds ({@link KvCache#bytesHeld()}) once it has taken a prompt of
     * {@code prompt} tokens, in chunks of {@code prefillChunk} (0: at once), and then {@code steps} single tokens, having
     * reserved room for them ({@link KvCache#reserve}, as every run of known length does). The bytes depend on those
     * counts only, so they are measured on a scratch cache fed random K/V, freed on return.
     */
    default long bytesHeldAfter(ModelShape shape, int prompt, int steps, int prefillChunk) {
        int heads = shape.kvHeads();
        int dim = shape.headDim();
        int chunk = prefillChunk > 0 ? Math.min(prefillChunk, prompt) : Math.max(prompt, 1);
        java.util.SplittableRandom random = new java.util.SplittableRandom(0);
        float[] k = new float[heads * chunk * dim];
        float[] v = new float[k.length];
        for (int i = 0; i < k.length; i++) {
            k[i] = (float) random.nextGaussian();
            v[i] = (float) random.nextGaussian();
        }
        dev.kvq.tensor.KvView keys = dev.kvq.tensor.KvView.of(k, heads, chunk, dim);
        dev.kvq.tensor.KvView values = dev.kvq.tensor.KvView.of(v, heads, chunk, dim);
        try (KvCache cache = newCache()) {
            cache.reserve(prompt + steps);
            for (int done = 0; done < prompt + steps; ) {
                int n = done < prompt ? Math.min(chunk, prompt - done) : 1;
                for (int l = 0; l < shape.layers(); l++) {
                    cache.append(l, keys.tokens(0, n), values.tokens(0, n));
                }
                done += n;
            }
            return cache.bytesHeld();
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
