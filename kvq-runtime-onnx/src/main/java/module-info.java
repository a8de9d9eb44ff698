/** ONNX Runtime as a kvq decoder runtime named {@code onnx}. */
module dev.kvq.runtime.onnx {
    requires dev.kvq.generate;
    requires com.microsoft.onnxruntime;

    provides dev.kvq.generate.spi.DecoderRuntime with dev.kvq.runtime.onnx.OnnxRuntimeProvider;
}
