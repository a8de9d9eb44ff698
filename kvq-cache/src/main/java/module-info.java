/**
 * kvq's KV cache: a quantized store per layer (through any backend found by name) plus a full-precision
 * residual window, under policy {@code kvtuner} or {@code append}; and a plain float32 cache.
 */
module dev.kvq.cache {
    requires transitive dev.kvq.api;

    exports dev.kvq.cache.quantized;
}
