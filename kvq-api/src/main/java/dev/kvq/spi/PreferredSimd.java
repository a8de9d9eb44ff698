package dev.kvq.spi;

import jdk.incubator.vector.FloatVector;

/** The platform's preferred float vector width; loaded only when the Vector API's module is present. */
final class PreferredSimd {
    private PreferredSimd() {
    }

    static int floatBits() {
        return FloatVector.SPECIES_PREFERRED.vectorBitSize();
    }
}
