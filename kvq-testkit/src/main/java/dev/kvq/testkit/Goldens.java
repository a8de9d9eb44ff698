package dev.kvq.testkit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kvq.io.safetensors.SafeTensors;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The golden vectors of {@code kvq.golden.dir}: the cases of one file as listed in {@code manifest.json}, and
 * the tensors. Any golden set in the same format (other inputs, shapes, configs) runs through the same tests.
 */
public final class Goldens {
    private static final ObjectMapper JSON = new ObjectMapper();

    private Goldens() {
    }

    /** The manifest's entry for {@code file} (e.g. {@code vanilla.safetensors}); skips when absent. */
    public static JsonNode entry(String file) {
        Path manifest = Shared.requireGolden("manifest.json");
        Shared.requireGolden(file);
        try {
            JsonNode root = JSON.readTree(manifest.toFile());
            JsonNode entry = root.path("files").path(file);
            if (entry.isMissingNode()) {
                throw new IllegalStateException(manifest + " has no entry for " + file);
            }
            return entry;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The cases of {@code file}. */
    public static List<JsonNode> cases(String file) {
        List<JsonNode> out = new ArrayList<>();
        entry(file).path("cases").forEach(out::add);
        if (out.isEmpty()) {
            throw new IllegalStateException("manifest lists no cases for " + file);
        }
        return out;
    }

    /** Opens the golden tensors file. */
    public static SafeTensors open(String file) {
        return SafeTensors.open(Shared.requireGolden(file));
    }
}
