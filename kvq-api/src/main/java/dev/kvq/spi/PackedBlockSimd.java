package dev.kvq.spi;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * {@link PackedBlock}'s SIMD decode of one vector of codes. Loaded only when {@link VectorSupport#enabled()} and the
 * float species has 8 or 16 lanes ({@link PackedBlock} checks).
 */
final class PackedBlockSimd {
    /** Byte and int species with the float species' lane count: constants, so C2 compiles the decode to SIMD. */
    private static final VectorSpecies<Byte> BYTE_SPECIES =
            VectorSpecies.of(byte.class, VectorShape.forBitSize(VectorSupport.floatLanes() * 8));
    private static final VectorSpecies<Integer> INT_SPECIES =
            VectorSpecies.of(int.class, VectorShape.forBitSize(VectorSupport.floatBits()));

    private PackedBlockSimd() {
    }

    /** One vector of codes (8 or 16 lanes) from byte {@code byteAt} of {@code codes} into floats at byte {@code out}. */
    static void decodeLanes(MemorySegment codes, long byteAt, int shift, int mask, int codeOffset, float scale,
                            float zero, boolean zeroPoint, MemorySegment dst, long out, ByteOrder order) {
        // sign-extending B2I is the cast C2 compiles on every x86 target; the mask removes the sign
        IntVector u = (IntVector) ByteVector.fromMemorySegment(BYTE_SPECIES, codes, byteAt, ByteOrder.LITTLE_ENDIAN)
                .convertShape(VectorOperators.B2I, INT_SPECIES, 0);
        u = u.lanewise(VectorOperators.LSHR, shift).and(mask);
        // the scalar path's operations in its order, so both give the same floats
        FloatVector v = zeroPoint
                ? ((FloatVector) u.add(codeOffset).convert(VectorOperators.I2F, 0)).add(zero).mul(scale)
                : ((FloatVector) u.convert(VectorOperators.I2F, 0)).mul(scale).add(zero);
        v.intoMemorySegment(dst, out, order);
    }
}
