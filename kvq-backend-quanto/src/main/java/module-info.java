/** optimum-quanto's KV quantization as a kvq backend named {@code quanto}. */
module dev.kvq.backend.quanto {
    requires dev.kvq.api;

    exports dev.kvq.backend.quanto;

    provides dev.kvq.spi.QuantizerProvider with dev.kvq.backend.quanto.QuantoProvider;
}
