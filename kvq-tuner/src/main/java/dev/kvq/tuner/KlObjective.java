package dev.kvq.tuner;

import dev.kvq.eval.Distributions;
import dev.kvq.eval.TeacherForcing;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.spi.Decoder;
import java.util.List;

/**
 * The KL objective: mean next-token KL(full precision || cache) over text windows, at the positions
 * {@link dev.kvq.eval.LikelihoodEval} scores. The full-precision distributions are computed once and kept, so each
 * candidate of a search runs only its own cache.
 */
final class KlObjective {
    private final Decoder decoder;
    private final List<int[]> windows;
    private final TeacherForcing.Options options;
    /** {@code [window][target - prefill - 1][vocab]} full-precision log-probabilities. */
    private final float[][][] reference;

    KlObjective(Decoder decoder, List<int[]> windows, int prefill) {
        this.decoder = decoder;
        this.windows = windows;
        this.options = new TeacherForcing.Options(prefill, windows.size(), false);
        this.reference = new float[windows.size()][windows.getFirst().length - prefill - 1][];
        TeacherForcing.run(decoder, CacheFactory.fullPrecision(decoder.config().shape()), null, windows, options,
                (w, target, logits, none) -> {
                    double[] lp = Distributions.logSoftmax(logits);
                    float[] f = new float[lp.length];
                    for (int i = 0; i < lp.length; i++) {
                        f[i] = (float) lp[i];
                    }
                    reference[w][target - prefill - 1] = f;
                });
    }

    double meanKl(CacheFactory caches) {
        double[] sum = new double[1];
        long[] n = new long[1];
        TeacherForcing.run(decoder, caches, null, windows, options, (w, target, logits, none) -> {
            double[] q = Distributions.logSoftmax(logits);
            float[] p = reference[w][target - options.prefill() - 1];
            double kl = 0;
            for (int i = 0; i < q.length; i++) {
                kl += Math.exp(p[i]) * (p[i] - q[i]);
            }
            sum[0] += Math.max(0, kl);
            n[0]++;
        });
        return sum[0] / n[0];
    }
}
