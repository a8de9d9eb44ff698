package dev.kvq.tuner;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * A calibration profile: per layer and candidate pair, the relative error of the layer's attention output when only
 * that layer's K/V are quantized (both, keys only, values only) and the effect on next-token KL; then the pruned
 * search space (each layer's Pareto pairs, and groups of similar layers that share one choice).
 *
 * @param model model directory name
 * @param scheme the quantization scheme measured ({@code per-token-asym} or {@code per-channel-asym})
 * @param config the base configuration (KVTuner field names) every candidate applies its bits to
 * @param calibration what text was used
 * @param layers per-layer measurements
 * @param groups layers that share one choice, and the candidates of each group
 * @param keysVersusValues summary of whether keys matter more than values on this model
 */
public record Profile(String model, String scheme, Map<String, Object> config, Map<String, Object> calibration,
                      List<LayerProfile> layers, List<Group> groups, Map<String, Object> keysVersusValues) {

    /** One layer's measurements. */
    public record LayerProfile(int layer, Map<String, Errors> errors, List<String> pareto) {
    }

    /**
     * Errors of one pair on one layer.
     *
     * @param attention relative error of softmax(qK^T/sqrt(d))V with quantized K and V
     * @param keyOnly the same with only K quantized
     * @param valueOnly the same with only V quantized
     * @param kl mean next-token KL against full precision with only this layer quantized, or null when not measured
     */
    public record Errors(double attention, double keyOnly, double valueOnly, Double kl) {
    }

    /** Layers that share one choice among {@code candidates}. */
    public record Group(List<Integer> layers, List<String> candidates) {
    }

    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    public void write(Path file) {
        try {
            Path parent = file.toAbsolutePath().getParent();
            if (parent != null) {
                Files.createDirectories(parent);
            }
            JSON.writeValue(file.toFile(), this);
        } catch (IOException e) {
            throw new KvqException(ErrorCode.IO, "cannot write " + file + ": " + e.getMessage(), e);
        }
    }

    public static Profile read(Path file) {
        if (!Files.isRegularFile(file)) {
            throw new KvqException(ErrorCode.IO, "profile " + file + " does not exist; make one with kvq calibrate");
        }
        try {
            Profile p = JSON.readValue(file.toFile(), Profile.class);
            if (p.layers() == null || p.layers().isEmpty() || p.groups() == null || p.config() == null) {
                throw new KvqException(ErrorCode.CORRUPT_DATA, file + " is not a complete kvq calibration profile");
            }
            return p;
        } catch (IOException e) {
            throw new KvqException(ErrorCode.CORRUPT_DATA, file + " is not a kvq calibration profile: " + e.getMessage(), e);
        }
    }
}
