package dev.kvq.runtime.onnx;

import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.spi.DecoderRuntime;
import dev.kvq.generate.spi.RuntimeOptions;

/** ONNX Runtime: loads {@code model.onnx} of a model directory (Optimum's text-generation-with-past naming). */
public final class OnnxRuntimeProvider implements DecoderRuntime {
    @Override
    public String name() {
        return "onnx";
    }

    @Override
    public String modelFile() {
        return "model.onnx";
    }

    @Override
    public Decoder open(ModelDir dir, RuntimeOptions options) {
        return OnnxDecoder.open(dir, options);
    }
}
