package dev.kvq.backend.vanilla;

import dev.kvq.spi.BitPacking;
import dev.kvq.spi.VectorSupport;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * {@link VanillaQuantizer}'s SIMD kernels, the same operations as its scalar kernel in the same order. Loaded only
 * when {@link VectorSupport#enabled()}.
 */
final class VanillaSimd {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;
    /** 1.5 * 2^23: adding and subtracting it rounds a float of magnitude below 2^22 half to even. */
    private static final float ROUND_MAGIC = 12582912f;
    private static final float RANGE_CLAMP = VanillaQuantizer.RANGE_CLAMP;
    /** Static final species are compile-time constants, which C2 needs to turn vector code into SIMD. */
    private static final VectorSpecies<Float> SPECIES =
            VectorSpecies.of(float.class, VectorShape.forBitSize(VectorSupport.floatBits()));
    private static final VectorSpecies<Byte> BYTE_SPECIES = SPECIES.length() < 8 || SPECIES.length() > 16 ? null
            : VectorSpecies.of(byte.class, VectorShape.forBitSize(SPECIES.length() * 8));

    private final boolean asym;
    private final int bits;
    private final int qmin;
    private final int qmax;

    VanillaSimd(boolean asym, int bits, int qmin, int qmax) {
        this.asym = asym;
        this.bits = bits;
        this.qmin = qmin;
        this.qmax = qmax;
    }

    /** Whether {@link #groupPacked} can write codes straight from vector registers (8 or 16 float lanes). */
    static boolean packsBytes() {
        return BYTE_SPECIES != null;
    }

    /** The vector kernel writing codes directly into {@code packed} at code position {@code codeIndex}. */
    void groupPacked(MemorySegment seg, long first, int gs, MemorySegment packed, long codeIndex,
                                   float[] params) {
        groupParams(seg, first, gs, params);
        float s = params[0];
        float z = params[1];
        float lo = qmin;
        float hi = qmax;
        int lanes = SPECIES.length();
        ByteOrder order = ByteOrder.nativeOrder();
        long base = first * Float.BYTES;
        long byteIndex = BitPacking.segmentByte(codeIndex, bits);
        int planes = bits == 8 ? 1 : 8 / bits;
        int plane = bits == 8 ? 0 : BitPacking.segmentShift(codeIndex, bits) / bits;
        for (int i = 0; i < gs; i += 16) {
            int shift = bits == 8 ? 0 : plane * bits;
            for (int half = 0; half < 16; half += lanes) {
                FloatVector y = FloatVector.fromMemorySegment(SPECIES, seg, base + (long) (i + half) * Float.BYTES, order)
                        .div(s);
                if (asym) {
                    y = y.sub(z);
                }
                y = y.max(lo).min(hi).add(ROUND_MAGIC).sub(ROUND_MAGIC).sub(lo);
                ByteVector b = (ByteVector) ((IntVector) y.convert(VectorOperators.F2I, 0))
                        .lanewise(VectorOperators.LSHL, shift).convertShape(VectorOperators.I2B, BYTE_SPECIES, 0);
                if (shift != 0) {
                    b = b.or(ByteVector.fromMemorySegment(BYTE_SPECIES, packed, byteIndex + half, ByteOrder.LITTLE_ENDIAN));
                }
                b.intoMemorySegment(packed, byteIndex + half, ByteOrder.LITTLE_ENDIAN);
            }
            if (bits == 8) {
                byteIndex += 16;
            } else if (++plane == planes) {
                plane = 0;
                byteIndex += BitPacking.CHUNK_BYTES;
            }
        }
    }

    /** Scale and zero of one group (vector reductions). */
    private void groupParams(MemorySegment seg, long first, int gs, float[] params) {
        VectorSpecies<Float> sp = SPECIES;
        int len = sp.length();
        int bound = sp.loopBound(gs);
        long base = first * Float.BYTES;
        ByteOrder order = ByteOrder.nativeOrder();
        if (asym) {
            FloatVector vmin = FloatVector.broadcast(sp, Float.POSITIVE_INFINITY);
            FloatVector vmax = FloatVector.broadcast(sp, Float.NEGATIVE_INFINITY);
            for (int i = 0; i < bound; i += len) {
                FloatVector v = FloatVector.fromMemorySegment(sp, seg, base + (long) i * Float.BYTES, order);
                vmin = vmin.min(v);
                vmax = vmax.max(v);
            }
            float mn = vmin.reduceLanes(VectorOperators.MIN);
            float mx = vmax.reduceLanes(VectorOperators.MAX);
            for (int i = bound; i < gs; i++) {
                float x = seg.getAtIndex(F32, first + i);
                mn = Math.min(mn, x);
                mx = Math.max(mx, x);
            }
            float s = Math.max(mx - mn, RANGE_CLAMP) / (float) (qmax - qmin);
            params[0] = s;
            params[1] = (float) Math.rint(mn / s) - (float) qmin;
        } else {
            FloatVector vmax = FloatVector.zero(sp);
            for (int i = 0; i < bound; i += len) {
                vmax = vmax.max(FloatVector.fromMemorySegment(sp, seg, base + (long) i * Float.BYTES, order).abs());
            }
            float amax = vmax.reduceLanes(VectorOperators.MAX);
            for (int i = bound; i < gs; i++) {
                amax = Math.max(amax, Math.abs(seg.getAtIndex(F32, first + i)));
            }
            params[0] = Math.max(amax, RANGE_CLAMP) / (float) qmax;
            params[1] = 0f;
        }
    }

    void group(MemorySegment seg, long first, int gs, int[] codes, float[] params) {
        groupParams(seg, first, gs, params);
        float s = params[0];
        float z = params[1];
        VectorSpecies<Float> sp = SPECIES;
        int len = sp.length();
        int bound = sp.loopBound(gs);
        long base = first * Float.BYTES;
        ByteOrder order = ByteOrder.nativeOrder();
        float lo = qmin;
        float hi = qmax;
        for (int i = 0; i < bound; i += len) {
            FloatVector y = FloatVector.fromMemorySegment(sp, seg, base + (long) i * Float.BYTES, order).div(s);
            if (asym) {
                y = y.sub(z);
            }
            y = y.max(lo).min(hi).add(ROUND_MAGIC).sub(ROUND_MAGIC).sub(lo);
            y.convert(VectorOperators.F2I, 0).reinterpretAsInts().intoArray(codes, i);
        }
        for (int i = bound; i < gs; i++) {
            float x = seg.getAtIndex(F32, first + i) / s;
            codes[i] = (int) clampRint(asym ? x - z : x) - qmin;
        }
    }

    private float clampRint(float y) {
        if (Float.isNaN(y)) {
            return qmin;
        }
        return (float) Math.rint(Math.min(Math.max(y, (float) qmin), (float) qmax));
    }
}
