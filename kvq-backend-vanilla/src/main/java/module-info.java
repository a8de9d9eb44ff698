/** KVTuner's vanilla quantizer as a kvq backend named {@code vanilla}. */
module dev.kvq.backend.vanilla {
    requires dev.kvq.api;
    requires static jdk.incubator.vector;

    exports dev.kvq.backend.vanilla;

    provides dev.kvq.spi.QuantizerProvider with dev.kvq.backend.vanilla.VanillaProvider;
}
