package dev.kvq.tuner;

import dev.kvq.cache.KvCache;
import dev.kvq.eval.Distributions;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.spi.Decoder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Next-token log-probabilities of text windows under a cache, predicted by decode steps after a prefill (the same
 * positions {@link dev.kvq.eval.LikelihoodEval} scores). The full-precision distributions are computed once and kept,
 * so each candidate of a search runs only its own cache.
 */
final class TeacherForcing {
    private TeacherForcing() {
    }

    /** {@code [window][position][vocab]} log-probabilities (float). */
    static float[][][] logProbs(Decoder decoder, CacheFactory caches, List<int[]> windows, int prefill) {
        float[][][] out = new float[windows.size()][][];
        run(decoder, caches, windows, prefill, (w, pos, logits) -> {
            if (out[w] == null) {
                out[w] = new float[windows.get(w).length - prefill - 1][];
            }
            double[] lp = Distributions.logSoftmax(logits);
            float[] f = new float[lp.length];
            for (int i = 0; i < lp.length; i++) {
                f[i] = (float) lp[i];
            }
            out[w][pos] = f;
        });
        return out;
    }

    /** Mean KL(reference || caches) over all scored positions. */
    static double meanKl(Decoder decoder, CacheFactory caches, List<int[]> windows, int prefill, float[][][] reference) {
        double[] sum = new double[1];
        long[] n = new long[1];
        run(decoder, caches, windows, prefill, (w, pos, logits) -> {
            double[] q = Distributions.logSoftmax(logits);
            float[] p = reference[w][pos];
            double kl = 0;
            for (int i = 0; i < q.length; i++) {
                double pi = Math.exp(p[i]);
                kl += pi * (p[i] - q[i]);
            }
            sum[0] += Math.max(0, kl);
            n[0]++;
        });
        return sum[0] / n[0];
    }

    interface Sink {
        void accept(int window, int position, float[] logits);
    }

    private static void run(Decoder decoder, CacheFactory caches, List<int[]> windows, int prefill, Sink sink) {
        int b = windows.size();
        List<KvCache> list = new ArrayList<>();
        for (int i = 0; i < b; i++) {
            list.add(caches.newCache());
        }
        try (DecodeSession s = new DecodeSession(decoder, list, caches.placement())) {
            int[][] feed = new int[b][];
            for (int i = 0; i < b; i++) {
                feed[i] = Arrays.copyOf(windows.get(i), prefill);
            }
            s.feed(feed, false);
            int length = windows.getFirst().length;
            for (int pos = prefill; pos < length - 1; pos++) {
                for (int i = 0; i < b; i++) {
                    feed[i] = new int[] {windows.get(i)[pos]};
                }
                float[][][] logits = s.feed(feed, false);
                for (int i = 0; i < b; i++) {
                    sink.accept(i, pos - prefill, logits[i][0]);
                }
            }
        }
    }
}
