package dev.kvq.cli;

import dev.kvq.KvqException;
import dev.kvq.config.LayerBits;
import dev.kvq.io.config.ConfigFiles;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A per-layer precision choice as files: {@code STEM.yaml} in KVTuner's per-layer format (which KVTuner itself and
 * {@code --kv-config} read), and {@code STEM.kvq.yaml}, a kvq configuration that applies it to the calibrated scheme,
 * so one {@code --kv-config} reproduces what was measured.
 */
final class PerLayerFiles {
    private PerLayerFiles() {
    }

    /** Writes both files into {@code dir}; {@code scheme} is the base configuration in KVTuner's field names. */
    static void write(Path dir, String stem, Map<Integer, LayerBits> layers, Map<String, Object> scheme, String comment) {
        String perLayer = stem + ".yaml";
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new KvqException(dev.kvq.ErrorCode.IO, "cannot create " + dir + ": " + e.getMessage(), e);
        }
        ConfigFiles.writePerLayer(dir.resolve(perLayer), layers);
        Map<String, Object> m = new LinkedHashMap<>(scheme);
        m.remove("nbits_key");
        m.remove("nbits_value");
        m.put("per_layer_quant", true);
        m.put("per_layer_config_path", perLayer);
        StringBuilder sb = new StringBuilder("# kvq configuration: ").append(comment).append('\n');
        m.forEach((k, v) -> sb.append(k).append(": ").append(v).append('\n'));
        Path out = dir.resolve(stem + ".kvq.yaml");
        try {
            Files.writeString(out, sb.toString());
        } catch (IOException e) {
            throw new KvqException(dev.kvq.ErrorCode.IO, "cannot write " + out + ": " + e.getMessage(), e);
        }
    }
}
