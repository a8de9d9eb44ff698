package dev.kvq.spi;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * Picks the float vector species once. {@code -Dkvq.vector.bits=0} turns the Vector API off (every kernel
 * then takes its scalar reference path); 128/256/512 force a width; unset uses the platform's preferred
 * width.
 */
public final class VectorSupport {
    private static final VectorSpecies<Float> FLOAT_SPECIES = choose();

    private VectorSupport() {
    }

    /** The float species to use, or null when vectors are off. */
    public static VectorSpecies<Float> floatSpecies() {
        return FLOAT_SPECIES;
    }

    /** Human-readable description for diagnostics ({@code "256-bit"} or {@code "scalar"}). */
    public static String describe() {
        return FLOAT_SPECIES == null ? "scalar" : FLOAT_SPECIES.vectorBitSize() + "-bit";
    }

    private static VectorSpecies<Float> choose() {
        String prop = System.getProperty("kvq.vector.bits", "").trim();
        if (prop.isEmpty()) {
            VectorSpecies<Float> preferred = FloatVector.SPECIES_PREFERRED;
            return preferred.length() < 4 ? null : preferred;
        }
        int bits = Integer.parseInt(prop);
        if (bits == 0) {
            return null;
        }
        return VectorSpecies.of(float.class, VectorShape.forBitSize(bits));
    }
}
