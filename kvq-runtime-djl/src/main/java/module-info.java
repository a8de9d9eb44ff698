/** DJL's PyTorch engine as a kvq decoder runtime named {@code djl}. */
module dev.kvq.runtime.djl {
    requires dev.kvq.generate;
    requires ai.djl.api;
    requires ai.djl.pytorch_engine;

    provides dev.kvq.generate.spi.DecoderRuntime with dev.kvq.runtime.djl.DjlRuntimeProvider;
}
