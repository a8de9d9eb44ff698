package dev.kvq.tuner;

import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.LayerBits;
import dev.kvq.io.config.ConfigFiles;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A per-layer precision choice as files: {@code STEM.yaml} in KVTuner's per-layer format (which KVTuner itself and
 * {@code --kv-config} read), and {@code STEM.kvq.yaml}, a kvq configuration that applies it to the calibrated scheme,
 * so one {@code --kv-config} reproduces what was measured.
 */
public final class PerLayerFiles {
    private PerLayerFiles() {
    }

    /** The two files of one choice. */
    public record Written(Path perLayer, Path config) {
    }

    /** Writes both files into {@code dir}; {@code scheme} is the configuration the bits apply to. */
    public static Written write(Path dir, String stem, Map<Integer, LayerBits> layers, KvQuantConfig scheme,
                                String comment) {
        Path perLayer = dir.resolve(stem + ".yaml");
        Path config = dir.resolve(stem + ".kvq.yaml");
        try {
            java.nio.file.Files.createDirectories(dir);
        } catch (java.io.IOException e) {
            throw new dev.kvq.KvqException(dev.kvq.ErrorCode.IO, "cannot create " + dir + ": " + e.getMessage(), e);
        }
        ConfigFiles.writePerLayer(perLayer, layers);
        ConfigFiles.writeWithPerLayerFile(config, scheme, perLayer.getFileName().toString(), comment);
        return new Written(perLayer, config);
    }

    /**
     * Writes each budget's best mix by the additive estimate as {@code estimate-B.BBbits.yaml} and {@code .kvq.yaml}
     * into {@code dir}, ready for {@code --kv-config} without a search.
     */
    public static List<Written> writeEstimates(Path dir, Profile profile, List<AdditiveKl.BudgetEstimate> estimates) {
        KvQuantConfig scheme = Tuning.scheme(profile);
        List<Written> out = new ArrayList<>();
        for (AdditiveKl.BudgetEstimate e : estimates) {
            out.add(write(dir, String.format("estimate-%.2fbits", e.budget()), e.layers(), scheme, String.format(
                    "the calibrated scheme with the per-layer bits of the lowest additive KL estimate within %.2f bits",
                    e.budget())));
        }
        return out;
    }
}
