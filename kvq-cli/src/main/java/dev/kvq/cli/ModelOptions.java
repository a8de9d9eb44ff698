package dev.kvq.cli;

import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.UnknownChars;
import dev.kvq.generate.spi.Decoder;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/** Which model, runtime and device. */
final class ModelOptions {
    @Option(names = "--model", required = true, paramLabel = "DIR", description = "Model directory (config.json, "
            + "model.onnx or model.torchscript.pt, vocab.json or tokenizer.json).")
    Path model;

    @Option(names = "--runtime", paramLabel = "NAME", converter = Checks.Runtime.class,
            description = "Inference runtime: onnx or djl (default: the configuration's, else onnx).")
    String runtime;

    @Option(names = "--device", paramLabel = "cpu|cuda", converter = Checks.Device.class,
            description = "Device: cpu, cuda or cuda:N (default: the configuration's, else cpu).")
    String device;

    @Option(names = "--unknown-chars", paramLabel = "error|replace[:C]", defaultValue = "error",
            converter = Checks.UnknownChars.class,
            description = "Characters outside a character vocabulary: fail, or replace with C (a space without :C).")
    String unknownChars;

    ModelDir dir() {
        return ModelDir.open(model);
    }

    UnknownChars unknown() {
        if (unknownChars.equals("error")) {
            return UnknownChars.ERROR;
        }
        if (unknownChars.equals("replace")) {
            return UnknownChars.replaceWith(" ");
        }
        if (unknownChars.startsWith("replace:")) {
            return UnknownChars.replaceWith(unknownChars.substring(8));
        }
        throw dev.kvq.KvqException.config("--unknown-chars must be error, replace or replace:C, was '" + unknownChars + "'");
    }

    Tokenizer tokenizer(ModelDir dir) {
        return Tokenizers.load(dir, unknown());
    }

    /** Opens the decoder with the runtime and device of the flags, else of {@code configRuntime}/{@code configDevice}. */
    Decoder open(ModelDir dir, String configRuntime, String configDevice) {
        String r = runtime != null ? runtime : configRuntime;
        String d = device != null ? device : configDevice;
        return Runtimes.discover().get(r).open(dir, d);
    }

    String runtimeOr(String configRuntime) {
        return runtime != null ? runtime : configRuntime;
    }
}
