package dev.kvq.runtime.djl;

import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.spi.DecoderRuntime;
import dev.kvq.generate.spi.RuntimeOptions;

/** DJL/PyTorch: loads {@code model.torchscript.pt} of a model directory (kvq's TorchScript contract). */
public final class DjlRuntimeProvider implements DecoderRuntime {
    @Override
    public String name() {
        return "djl";
    }

    @Override
    public String modelFile() {
        return "model.torchscript.pt";
    }

    @Override
    public Decoder open(ModelDir dir, RuntimeOptions options) {
        return DjlDecoder.open(dir, options);
    }
}
