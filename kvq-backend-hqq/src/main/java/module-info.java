/** Half-Quadratic Quantization (mobiusml/hqq) as a kvq backend named {@code hqq}. */
module dev.kvq.backend.hqq {
    requires dev.kvq.api;
    requires static jdk.incubator.vector;

    exports dev.kvq.backend.hqq;

    provides dev.kvq.spi.QuantizerProvider with dev.kvq.backend.hqq.HqqProvider;
}
