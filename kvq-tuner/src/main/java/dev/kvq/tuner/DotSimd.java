package dev.kvq.tuner;

import dev.kvq.spi.VectorSupport;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/** {@link LlamaProbe}'s dot product with the Vector API. Loaded only when {@link VectorSupport#enabled()}. */
final class DotSimd {
    private static final VectorSpecies<Float> S =
            VectorSpecies.of(float.class, VectorShape.forBitSize(VectorSupport.floatBits()));

    private DotSimd() {
    }

    static float dot(float[] a, int ao, float[] b, int bo, int n) {
        FloatVector acc = FloatVector.zero(S);
        int i = 0;
        int bound = S.loopBound(n);
        for (; i < bound; i += S.length()) {
            acc = FloatVector.fromArray(S, a, ao + i).fma(FloatVector.fromArray(S, b, bo + i), acc);
        }
        float s = acc.reduceLanes(VectorOperators.ADD);
        for (; i < n; i++) {
            s += a[ao + i] * b[bo + i];
        }
        return s;
    }
}
