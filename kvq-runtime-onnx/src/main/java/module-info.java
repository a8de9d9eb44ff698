/** ONNX Runtime as a kvq decoder runtime named {@code onnx}. */
module dev.kvq.runtime.onnx {
    requires dev.kvq.generate;
    requires com.microsoft.onnxruntime;
    requires com.google.protobuf;

    // protobuf reads generated messages reflectively (text format, field accessors)
    exports dev.kvq.runtime.onnx.graph.proto to com.google.protobuf;

    provides dev.kvq.generate.spi.DecoderRuntime with dev.kvq.runtime.onnx.OnnxRuntimeProvider;
}
