package dev.kvq.cache.quantized;

import dev.kvq.discovery.KvBackends;
import dev.kvq.discovery.ProviderRegistry;
import dev.kvq.cache.KvCache;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.ModelShape;
import dev.kvq.spi.QuantizerProvider;

/** Entry point: validated cache specs and caches. */
public final class KvCaches {
    private KvCaches() {
    }

    /** Validates {@code config} against {@code shape} and the discovered backends. */
    public static CacheSpec spec(KvQuantConfig config, ModelShape shape) {
        return new CacheSpec(config, shape, KvBackends.discover());
    }

    /** Validates {@code config} against {@code shape} and the given backends. */
    public static CacheSpec spec(KvQuantConfig config, ModelShape shape, ProviderRegistry<QuantizerProvider> backends) {
        return new CacheSpec(config, shape, backends);
    }

    /** A new quantized cache for one sequence. */
    public static QuantizedKvCache open(KvQuantConfig config, ModelShape shape) {
        return spec(config, shape).newCache();
    }

    /** A new full-precision (float32) cache for one sequence. */
    public static KvCache fullPrecision(ModelShape shape) {
        return new FullPrecisionKvCache(shape);
    }
}
