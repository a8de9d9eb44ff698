package dev.kvq.spi;

import java.util.Map;

/**
 * What one quantizer instance is asked to do: bit width, axis, group size, symmetry and backend options.
 * The cache makes one spec per (bits, axis) combination its plan uses.
 *
 * @param bits code width
 * @param axis axis as configured (0 per token; 1 or -1 per channel, in the backend's own spelling)
 * @param groupSize elements per group, or -1 for one group per head_dim row
 * @param asym asymmetric (min/max) rather than symmetric (absmax)
 * @param options backend-specific options, never null
 */
public record QuantSpec(int bits, int axis, int groupSize, boolean asym, Map<String, String> options) {
    public QuantSpec {
        options = options == null ? Map.of() : Map.copyOf(options);
    }

    public static QuantSpec of(int bits, int axis, int groupSize, boolean asym) {
        return new QuantSpec(bits, axis, groupSize, asym, Map.of());
    }

    /** The option's value, or {@code fallback} when absent. */
    public String option(String key, String fallback) {
        return options.getOrDefault(key, fallback);
    }

    @Override
    public String toString() {
        return bits + "-bit " + (asym ? "asym" : "sym") + " axis " + axis + " group " + groupSize
                + (options.isEmpty() ? "" : " " + options);
    }
}
