package dev.kvq.backend.hqq;

import dev.kvq.spi.VectorSupport;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/** {@link HqqQuantizer}'s SIMD solver iteration. Loaded only when {@link VectorSupport#enabled()}. */
final class HqqSimd {
    /** 1.5 * 2^23: adding and subtracting it rounds a float of magnitude below 2^22 half to even. */
    private static final float ROUND_MAGIC = 12582912f;
    /** A static final species is a compile-time constant, which C2 needs to turn vector code into SIMD. */
    private static final VectorSpecies<Float> SPECIES =
            VectorSpecies.of(float.class, VectorShape.forBitSize(VectorSupport.floatBits()));

    private HqqSimd() {
    }

    /**
     * One solver iteration for one group, as {@link HqqQuantizer}'s scalar kernel computes it: writes the group's next
     * zero and returns the sum of |x - r|.
     */
    static double iterateGroup(float[] w, int from, int gs, float s, float z, float beta, int maxCode, float[] zNext,
                               int g) {
        VectorSpecies<Float> sp = SPECIES;
        int bound = sp.loopBound(gs);
        double err = 0;
        double zSum = 0;
        float invBeta = 1f / beta;
        int i = 0;
        for (; i < bound; i += sp.length()) {
            FloatVector x = FloatVector.fromArray(sp, w, from + i);
            FloatVector q = x.mul(s).add(z).max(0f).min((float) maxCode).add(ROUND_MAGIC).sub(ROUND_MAGIC);
            FloatVector r = q.sub(z).div(s);
            FloatVector d = x.sub(r);
            FloatVector ad = d.abs();
            err += ad.reduceLanes(VectorOperators.ADD);
            FloatVector mag = ad.sub(ad.pow(HqqQuantizer.P - 1f).mul(invBeta)).max(0f);
            FloatVector e = mag.blend(mag.neg(), d.lt(0f));
            zSum += q.sub(x.sub(e).mul(s)).reduceLanes(VectorOperators.ADD);
        }
        for (; i < gs; i++) {
            float x = w[from + i];
            float q = (float) Math.rint(Math.min(Math.max(x * s + z, 0f), (float) maxCode));
            float r = (q - z) / s;
            float d = x - r;
            err += Math.abs(d);
            zSum += q - (x - HqqQuantizer.shrink(d, beta)) * s;
        }
        zNext[g] = (float) (zSum / gs);
        return err;
    }
}
