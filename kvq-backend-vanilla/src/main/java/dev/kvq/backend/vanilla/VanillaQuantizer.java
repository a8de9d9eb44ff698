package dev.kvq.backend.vanilla;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.spi.AffineForm;
import dev.kvq.spi.BitPacking;
import dev.kvq.spi.CodeOrder;
import dev.kvq.spi.GroupedInput;
import dev.kvq.spi.PackedBlock;
import dev.kvq.spi.QuantSpec;
import dev.kvq.spi.Quantizer;
import dev.kvq.spi.VectorSupport;
import dev.kvq.tensor.KvView;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/**
 * One (bits, axis, group, symmetry) instance of KVTuner's vanilla quantizer.
 *
 * <p>Asym: {@code s = max(max-min, 1e-5) / (qmax-qmin)}, {@code z = rint(min/s) - qmin},
 * {@code q = clip(rint(x/s - z), qmin, qmax)}; sym: {@code s = max(max|x|, 1e-5) / qmax},
 * {@code q = clip(rint(x/s), qmin, qmax)}, with {@code qmin = -2^(n-1)}, {@code qmax = 2^(n-1)-1}. Every float
 * operation is the reference's, in the same order, so codes match it bit for bit; the vector path equals the
 * scalar one because clamping before rounding keeps values where the round-to-nearest-even trick is exact.
 */
final class VanillaQuantizer implements Quantizer {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final float RANGE_CLAMP = 1e-5f;
    /** 1.5 * 2^23: adding and subtracting it rounds a float of magnitude below 2^22 half to even. */
    private static final float ROUND_MAGIC = 12582912f;

    private final QuantSpec spec;
    private final int bits;
    private final int qmin;
    private final int qmax;
    /** A static final species is a compile-time constant, which C2 needs to turn vector code into SIMD. */
    private static final VectorSpecies<Float> SPECIES = VectorSupport.floatSpecies();
    private static final VectorSpecies<Byte> BYTE_SPECIES = SPECIES == null || SPECIES.length() < 8
            || SPECIES.length() > 16 ? null : VectorSpecies.of(byte.class, VectorShape.forBitSize(SPECIES.length() * 8));

    private final boolean vectorized;

    VanillaQuantizer(QuantSpec spec) {
        this(spec, SPECIES != null);
    }

    /** {@code vectorized = false} forces the scalar reference kernel (tests compare both). */
    VanillaQuantizer(QuantSpec spec, boolean vectorized) {
        this.spec = spec;
        this.bits = spec.bits();
        this.qmin = -(1 << (bits - 1));
        this.qmax = (1 << (bits - 1)) - 1;
        this.vectorized = vectorized && SPECIES != null;
    }

    @Override
    public QuantSpec spec() {
        return spec;
    }

    @Override
    public PackedBlock quantize(KvView input, SegmentAllocator allocator) {
        int gs = spec.groupSize() == -1 ? input.headDim() : spec.groupSize();
        long n = input.elements();
        if (n % gs != 0) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "vanilla: " + n + " elements (" + input.heads() + "x"
                    + input.tokens() + "x" + input.headDim() + ") cannot be split into groups of " + gs);
        }
        CodeOrder order = spec.axis() == 0 ? CodeOrder.TOKEN_MAJOR : CodeOrder.HEAD_CHANNEL_MAJOR;
        PackedBlock block = PackedBlock.allocate(allocator, bits, order, AffineForm.ZERO_POINT, qmin, input.heads(),
                input.tokens(), input.headDim(), gs);
        long groups = n / gs;
        int[] codes = new int[gs];
        float[] params = new float[2];
        // Whole 16-code segments of 8-bit or planar codes are written straight from vector registers.
        boolean direct = vectorized && BYTE_SPECIES != null && gs % 16 == 0
                && (bits == 8 || BitPacking.planar(bits));
        try (GroupedInput in = GroupedInput.of(input, order, gs)) {
            MemorySegment seg = in.segment();
            for (long g = 0; g < groups; g++) {
                long first = in.offset() + g * gs;
                if (direct) {
                    groupVectorPacked(seg, first, gs, block.codes(), g * gs, params);
                } else if (vectorized && gs >= SPECIES.length()) {
                    groupVector(seg, first, gs, codes, params);
                } else {
                    groupScalar(seg, first, gs, codes, params);
                }
                if (!Float.isFinite(params[0]) || !Float.isFinite(params[1])) {
                    throw new KvqException(ErrorCode.NON_FINITE_INPUT, "vanilla: group " + g
                            + " has a non-finite scale or zero point; the input holds NaN or infinite values");
                }
                if (!direct) {
                    BitPacking.pack(codes, 0, gs, bits, block.codes(), g * gs);
                }
                block.setGroup(g, params[0], params[1]);
            }
        }
        return block;
    }

    /** Scalar reference kernel: one group at {@code first}, codes (unsigned) and (scale, zero) out. */
    void groupScalar(MemorySegment seg, long first, int gs, int[] codes, float[] params) {
        if (spec.asym()) {
            float mn = Float.POSITIVE_INFINITY;
            float mx = Float.NEGATIVE_INFINITY;
            for (int i = 0; i < gs; i++) {
                float x = seg.getAtIndex(F32, first + i);
                mn = Math.min(mn, x);
                mx = Math.max(mx, x);
            }
            float s = Math.max(mx - mn, RANGE_CLAMP) / (float) (qmax - qmin);
            float z = (float) Math.rint(mn / s) - (float) qmin;
            for (int i = 0; i < gs; i++) {
                float y = seg.getAtIndex(F32, first + i) / s - z;
                codes[i] = (int) clampRint(y) - qmin;
            }
            params[0] = s;
            params[1] = z;
        } else {
            float amax = 0f;
            for (int i = 0; i < gs; i++) {
                amax = Math.max(amax, Math.abs(seg.getAtIndex(F32, first + i)));
            }
            float s = Math.max(amax, RANGE_CLAMP) / (float) qmax;
            for (int i = 0; i < gs; i++) {
                codes[i] = (int) clampRint(seg.getAtIndex(F32, first + i) / s) - qmin;
            }
            params[0] = s;
            params[1] = 0f;
        }
    }

    private float clampRint(float y) {
        if (Float.isNaN(y)) {
            return qmin;
        }
        return (float) Math.rint(Math.min(Math.max(y, (float) qmin), (float) qmax));
    }

    /** The vector kernel writing codes directly into {@code packed} at code position {@code codeIndex}. */
    private void groupVectorPacked(MemorySegment seg, long first, int gs, MemorySegment packed, long codeIndex,
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
                if (spec.asym()) {
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
        if (spec.asym()) {
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

    private void groupVector(MemorySegment seg, long first, int gs, int[] codes, float[] params) {
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
            if (spec.asym()) {
                y = y.sub(z);
            }
            y = y.max(lo).min(hi).add(ROUND_MAGIC).sub(ROUND_MAGIC).sub(lo);
            y.convert(VectorOperators.F2I, 0).reinterpretAsInts().intoArray(codes, i);
        }
        for (int i = bound; i < gs; i++) {
            float x = seg.getAtIndex(F32, first + i) / s;
            codes[i] = (int) clampRint(spec.asym() ? x - z : x) - qmin;
        }
    }
}
