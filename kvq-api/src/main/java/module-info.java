/**
 * kvq's stable contracts. Client code uses {@code dev.kvq}, {@code dev.kvq.config},
 * {@code dev.kvq.cache} and {@code dev.kvq.tensor}; quantizer backends implement
 * {@code dev.kvq.spi}. No third-party dependency.
 */
module dev.kvq.api {
    // optional: the SIMD kernels run when the module is present, the scalar path otherwise (VectorSupport)
    requires static jdk.incubator.vector;

    exports dev.kvq;
    exports dev.kvq.config;
    exports dev.kvq.tensor;
    exports dev.kvq.cache;
    exports dev.kvq.spi;
    exports dev.kvq.discovery;

    uses dev.kvq.spi.QuantizerProvider;
}
