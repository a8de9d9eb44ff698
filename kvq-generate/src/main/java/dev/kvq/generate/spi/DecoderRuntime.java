package dev.kvq.generate.spi;

import dev.kvq.generate.model.ModelDir;

/**
 * An inference runtime (ONNX Runtime, DJL/PyTorch) that runs a decoder with external KV inputs and outputs.
 * Discovered by {@link java.util.ServiceLoader}; {@code runtime: NAME} in a configuration selects one.
 */
public interface DecoderRuntime {
    /** Stable lower-case name ({@code onnx}, {@code djl}). */
    String name();

    /** The model file this runtime loads from a model directory ({@code model.onnx}). */
    String modelFile();

    /** Loads the decoder of {@code dir}; checks that its inputs and outputs agree with {@code config.json}. */
    Decoder open(ModelDir dir, RuntimeOptions options);

    /** Loads the decoder of {@code dir} on {@code device} with the runtime's default threads. */
    default Decoder open(ModelDir dir, String device) {
        return open(dir, RuntimeOptions.on(device));
    }
}
