package dev.kvq.serve;

/**
 * Log-probabilities from a row of logits: the log-softmax of one token and the most likely tokens, as OpenAI's
 * {@code logprobs} reports them. Works in place on the logits' array without allocating beyond the answer.
 */
final class LogProbs {
    private LogProbs() {
    }

    /** log(sum(exp(logits))), computed stably. */
    static double logSumExp(float[] logits) {
        float max = Float.NEGATIVE_INFINITY;
        for (float l : logits) {
            max = Math.max(max, l);
        }
        double sum = 0;
        for (float l : logits) {
            sum += Math.exp(l - max);
        }
        return max + Math.log(sum);
    }

    /**
     * The ids of the {@code k} highest logits, highest first (the lower id first on ties, as greedy sampling picks).
     */
    static int[] top(float[] logits, int k) {
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
