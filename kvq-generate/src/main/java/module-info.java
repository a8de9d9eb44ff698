/**
 * Generation through kvq's KV cache. Runtimes (ONNX Runtime, DJL) implement {@link dev.kvq.generate.spi.DecoderRuntime}
 * and are found by name; this module owns the one prefill/decode loop they all share.
 */
module dev.kvq.generate {
    requires transitive dev.kvq.api;
    requires transitive dev.kvq.cache;
    requires com.fasterxml.jackson.databind;
    requires ai.djl.tokenizers;
    requires ai.djl.api;

    exports dev.kvq.generate;
    exports dev.kvq.generate.spi;
    exports dev.kvq.generate.model;

    uses dev.kvq.generate.spi.DecoderRuntime;
}
