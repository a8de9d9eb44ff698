package dev.kvq.generate;

/**
 * What a row of next-token logits says: its log-normalizer (a token's log-probability is its logit minus it) and its
 * most likely tokens. Reads the row in place and allocates nothing beyond the answer.
 */
public final class Logits {
    private Logits() {
    }

    /** log(sum(exp(logits))), computed stably. */
    public static double logSumExp(float[] logits) {
        double max = Double.NEGATIVE_INFINITY;
        for (float l : logits) {
            max = Math.max(max, l);
        }
        double sum = 0;
        for (float l : logits) {
            sum += Math.exp(l - max);
        }
        return Math.log(sum) + max;
    }

    /**
     * The ids of the {@code k} highest logits, highest first (the lower id first on ties, as greedy sampling picks).
     */
    public static int[] top(float[] logits, int k) {
        int n = Math.min(k, logits.length);
        int[] best = new int[n];
        int size = 0;
        for (int id = 0; id < logits.length; id++) {
            float l = logits[id];
            if (size == n && !(l > logits[best[n - 1]])) {
                continue;
            }
            int at = size == n ? n - 1 : size++;
            while (at > 0 && l > logits[best[at - 1]]) {
                best[at] = best[at - 1];
                at--;
            }
            best[at] = id;
        }
        return best;
    }
}
