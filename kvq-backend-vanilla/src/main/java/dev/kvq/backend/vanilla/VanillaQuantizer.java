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
    static final float RANGE_CLAMP = 1e-5f;

    private final QuantSpec spec;
    private final int bits;
    private final int qmin;
    private final int qmax;
    /** The SIMD kernels, or null for the scalar reference kernel. */
    private final VanillaSimd simd;

    VanillaQuantizer(QuantSpec spec) {
        this(spec, true);
    }

    /**
     * {@code vectorized = false} forces the scalar reference kernel (tests compare both); the SIMD kernels run only
     * when {@link VectorSupport#enabled()}.
     */
    VanillaQuantizer(QuantSpec spec, boolean vectorized) {
        this.spec = spec;
        this.bits = spec.bits();
        this.qmin = -(1 << (bits - 1));
        this.qmax = (1 << (bits - 1)) - 1;
        this.simd = vectorized && VectorSupport.enabled() ? new VanillaSimd(spec.asym(), bits, qmin, qmax) : null;
    }

    @Override
    public QuantSpec spec() {
        return spec;
    }

    @Override
    public PackedBlock quantize(KvView input, SegmentAllocator allocator) {
        int gs = groupSize(input);
        long n = input.elements();
        if (n % gs != 0) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "vanilla: " + n + " elements (" + input.heads() + "x"
                    + input.tokens() + "x" + input.headDim() + ") cannot be split into groups of " + gs);
        }
        CodeOrder order = spec.axis() == 0 ? CodeOrder.TOKEN_MAJOR : CodeOrder.HEAD_CHANNEL_MAJOR;
        PackedBlock block = PackedBlock.allocate(allocator, bits, order, AffineForm.ZERO_POINT, qmin, input.heads(),
                input.tokens(), input.headDim(), gs);
        long groups = n / gs;
        boolean direct = packsDirectly(gs);
        int[] codes = direct ? null : new int[gs];
        float[] params = new float[2];
        try (GroupedInput in = GroupedInput.of(input, order, gs)) {
            MemorySegment seg = in.segment();
            for (long g = 0; g < groups; g++) {
                group(seg, in.offset() + g * gs, gs, direct, block, g, codes, params);
            }
        }
        return block;
    }

    /** Writes the token's groups straight into {@code into}'s rows for token {@code at}, where its layout allows. */
    @Override
    public void quantizeToken(KvView token, PackedBlock into, int at, SegmentAllocator scratch) {
        int gs = groupSize(token);
        int dim = token.headDim();
        if (spec.axis() != 0 || token.tokens() != 1 || !into.rowCopyable() || into.bits() != bits
                || into.form() != AffineForm.ZERO_POINT || into.codeOffset() != qmin || into.groupSize() != gs
                || into.heads() != token.heads() || into.headDim() != dim || at < 0 || at >= into.tokens()) {
            Quantizer.super.quantizeToken(token, into, at, scratch);
            return;
        }
        int perRow = dim / gs;
        boolean direct = packsDirectly(gs);
        int[] codes = direct ? null : new int[gs];
        float[] params = new float[2];
        MemorySegment seg = token.segment();
        for (int h = 0; h < token.heads(); h++) {
            long first = token.rowIndex(h, 0);
            long row = (long) h * into.tokens() + at;
            for (int i = 0; i < perRow; i++) {
                group(seg, first + (long) i * gs, gs, direct, into, row * perRow + i, codes, params);
            }
        }
    }

    private int groupSize(KvView input) {
        return spec.groupSize() == -1 ? input.headDim() : spec.groupSize();
    }

    /** Whether groups of {@code gs} are written straight from vector registers (whole 16-code segments). */
    private boolean packsDirectly(int gs) {
        return simd != null && VanillaSimd.packsBytes() && gs % 16 == 0 && (bits == 8 || BitPacking.planar(bits));
    }

    /**
     * Quantizes the {@code gs} floats at element {@code first} of {@code seg} as group {@code g} of {@code block},
     * whose codes there are still zero; {@code direct} is {@link #packsDirectly}'s answer for {@code gs}, {@code
     * codes} (unused when direct) and {@code params} are scratch.
     */
    private void group(MemorySegment seg, long first, int gs, boolean direct, PackedBlock block, long g,
                       int[] codes, float[] params) {
        if (direct) {
            simd.groupPacked(seg, first, gs, block.codes(), g * gs, params);
        } else if (simd != null && gs >= VectorSupport.floatLanes()) {
            simd.group(seg, first, gs, codes, params);
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
}
