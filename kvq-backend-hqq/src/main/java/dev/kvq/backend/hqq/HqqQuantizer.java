package dev.kvq.backend.hqq;

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
 * One HQQ quantizer. Grouping as HQQ reshapes: axis 1 views the tensor as {@code [N/gs, gs]} (consecutive
 * groups, {@link CodeOrder#TOKEN_MAJOR}); axis 0 as {@code [gs, N/gs]} (group c holds elements c, c+N/gs, ...,
 * {@link CodeOrder#STRIDED}).
 *
 * <p>Init: inverse scale {@code s = (1/(max-min)) * (2^n-1)} (PyTorch's order for a scalar over a tensor), 1 where {@code |max-min| <= 1e-4} (hqq 0.2.7+), clamped to
 * at most 2e4; zero {@code z = -min*s}. Without the optimizer: {@code q = clip(rint(x*s + z), 0, 2^n-1)}. With it
 * (20 iterations of {@code optimize_weights_proximal_legacy}, p = 0.7, beta = 10): {@code q = clip(rint(x*s+z))},
 * {@code r = (q-z)/s}, {@code e = shrink(x-r)}, {@code z = mean_group(q - (x-e)*s)}, error {@code mean|x-r|} over
 * the whole tensor; stop at the first iteration that does not improve, keeping its z (no rollback). The block
 * stores scale {@code 1/s} and the negated zero, so that dequantization is HQQ's {@code (q - zero) * scale}.
 */
final class HqqQuantizer implements Quantizer {
    static final float P = 0.7f;
    static final float BETA = 10f;
    static final float KAPPA = 1.01f;
    static final int ITERATIONS = 20;
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private final QuantSpec spec;
    private final boolean optimize;
    private final boolean betaGrowth;
    private final int maxCode;
    /** Whether the solver's iterations run the SIMD kernel ({@link HqqSimd}). */
    private final boolean vectorized;

    HqqQuantizer(QuantSpec spec, boolean optimize, boolean betaGrowth) {
        this(spec, optimize, betaGrowth, true);
    }

    /** {@code vectorized = false} forces the scalar kernel (tests compare both); SIMD needs {@link VectorSupport#enabled()}. */
    HqqQuantizer(QuantSpec spec, boolean optimize, boolean betaGrowth, boolean vectorized) {
        this.spec = spec;
        this.optimize = optimize;
        this.betaGrowth = betaGrowth;
        this.maxCode = (1 << spec.bits()) - 1;
        this.vectorized = vectorized && VectorSupport.enabled();
    }

    @Override
    public QuantSpec spec() {
        return spec;
    }

    @Override
    public PackedBlock quantize(KvView input, SegmentAllocator allocator) {
        int gs = spec.groupSize();
        long n = input.elements();
        if (n % gs != 0) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "hqq: " + n + " elements (" + input.heads() + "x"
                    + input.tokens() + "x" + input.headDim() + ") cannot be split into groups of " + gs);
        }
        CodeOrder order = spec.axis() == 1 ? CodeOrder.TOKEN_MAJOR : CodeOrder.STRIDED;
        int groups = Math.toIntExact(n / gs);
        float[] w = new float[Math.toIntExact(n)];
        try (GroupedInput in = GroupedInput.of(input, order, gs)) {
            MemorySegment.copy(in.segment(), F32, in.offset() * Float.BYTES, w, 0, w.length);
        }
        float[] s = new float[groups];
        float[] z = new float[groups];
        initialise(w, gs, s, z);
        if (optimize) {
            optimizeZeros(w, gs, s, z);
        }
        PackedBlock block = PackedBlock.allocate(allocator, spec.bits(), order, AffineForm.ZERO_POINT, 0, input.heads(),
                input.tokens(), input.headDim(), gs);
        int[] codes = new int[gs];
        for (int g = 0; g < groups; g++) {
            codes(w, g * gs, gs, s[g], z[g], codes);
            BitPacking.pack(codes, 0, gs, spec.bits(), block.codes(), (long) g * gs);
            // HQQ's meta: scale = 1/s; dequantization (q - zero) * scale == ((q + 0) + (-zero)) * scale exactly.
            block.setGroup(g, 1f / s[g], -z[g]);
        }
        return block;
    }

    private void initialise(float[] w, int gs, float[] s, float[] z) {
        for (int g = 0; g < s.length; g++) {
            float mn = Float.POSITIVE_INFINITY;
            float mx = Float.NEGATIVE_INFINITY;
            for (int i = g * gs, end = i + gs; i < end; i++) {
                mn = Math.min(mn, w[i]);
                mx = Math.max(mx, w[i]);
            }
            if (!Float.isFinite(mn) || !Float.isFinite(mx)) {
                throw new KvqException(ErrorCode.NON_FINITE_INPUT, "hqq: group " + g + " holds non-finite values");
            }
            float denom = mx - mn;
            // PyTorch evaluates `max_v / denom` (a scalar over a tensor) as reciprocal(denom) * max_v.
            float inv = Math.abs(denom) <= 1e-4f ? 1f : (1f / denom) * maxCode;
            inv = Math.min(inv, 2e4f);
            s[g] = inv;
            z[g] = -mn * inv;
        }
    }

    /** {@code optimize_weights_proximal_legacy} in float32: updates {@code z} in place. */
    void optimizeZeros(float[] w, int gs, float[] s, float[] z) {
        float beta = BETA;
        double best = Double.POSITIVE_INFINITY;
        float[] zNext = new float[z.length];
        for (int it = 0; it < ITERATIONS; it++) {
            double errorSum = 0;
            for (int g = 0; g < z.length; g++) {
                errorSum += vectorized && gs >= VectorSupport.floatLanes()
                        ? HqqSimd.iterateGroup(w, g * gs, gs, s[g], z[g], beta, maxCode, zNext, g)
                        : iterateGroupScalar(w, g * gs, gs, s[g], z[g], beta, zNext, g);
            }
            System.arraycopy(zNext, 0, z, 0, z.length);
            if (betaGrowth) {
                beta *= KAPPA;
            }
            double error = errorSum / w.length;
            if (error < best) {
                best = error;
            } else {
                break;
            }
        }
    }

    /** One solver iteration for one group; writes the group's next zero and returns the sum of |x - r|. */
    private double iterateGroupScalar(float[] w, int from, int gs, float s, float z, float beta, float[] zNext, int g) {
        double err = 0;
        double zSum = 0;
        for (int i = from, end = from + gs; i < end; i++) {
            float x = w[i];
            float q = clampRint(x * s + z);
            float r = (q - z) / s;
            float d = x - r;
            err += Math.abs(d);
            float e = shrink(d, beta);
            zSum += q - (x - e) * s;
        }
        zNext[g] = (float) (zSum / gs);
        return err;
    }

    /** HQQ's {@code shrink_lp_op}: {@code sign(x) * max(|x| - |x|^(p-1) / beta, 0)}. */
    static float shrink(float x, float beta) {
        float a = Math.abs(x);
        float mag = Math.max(a - (float) Math.pow(a, P - 1f) * (1f / beta), 0f);
        return Math.signum(x) * mag;
    }

    private float clampRint(float v) {
        return (float) Math.rint(Math.min(Math.max(v, 0f), (float) maxCode));
    }

    private void codes(float[] w, int from, int gs, float s, float z, int[] out) {
        for (int i = 0; i < gs; i++) {
            out[i] = (int) clampRint(w[from + i] * s + z);
        }
    }
}
