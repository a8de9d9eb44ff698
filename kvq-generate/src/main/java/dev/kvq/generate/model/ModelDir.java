package dev.kvq.generate.model;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * A model directory: {@code config.json}, the model file of a runtime ({@code model.onnx},
 * {@code model.torchscript.pt}), and a tokenizer ({@code vocab.json} with a character vocabulary, or a Hugging Face
 * {@code tokenizer.json}).
 */
public record ModelDir(Path root, ModelConfig config) {
    /** Opens {@code dir}, reading its {@code config.json}; fails with a message naming what is missing. */
    public static ModelDir open(Path dir) {
        if (!Files.isDirectory(dir)) {
            throw new KvqException(ErrorCode.MODEL_INVALID, "model directory " + dir + " does not exist or is not a "
                    + "directory");
        }
        Path config = dir.resolve("config.json");
        if (!Files.isRegularFile(config)) {
            throw new KvqException(ErrorCode.MODEL_INVALID, dir + " has no config.json; a model directory holds "
                    + "config.json, model.onnx (or model.torchscript.pt) and vocab.json or tokenizer.json");
        }
        return new ModelDir(dir.toAbsolutePath().normalize(), ModelConfig.read(config));
    }

    /** {@code root/name}, failing with a message when it is absent. */
    public Path require(String name, String what) {
        Path p = root.resolve(name);
        if (!Files.isRegularFile(p)) {
            throw new KvqException(ErrorCode.MODEL_INVALID, root + " has no " + name + " (" + what + ")");
        }
        return p;
    }

    public boolean has(String name) {
        return Files.isRegularFile(root.resolve(name));
    }

    public String name() {
        return root.getFileName() == null ? root.toString() : root.getFileName().toString();
    }
}
