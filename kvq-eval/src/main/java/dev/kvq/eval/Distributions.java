package dev.kvq.eval;

/** Log-softmax, negative log-likelihood and KL divergence of next-token distributions, in double precision. */
public final class Distributions {
    private Distributions() {
    }

    public static double[] logSoftmax(float[] logits) {
        double log = dev.kvq.generate.Logits.logSumExp(logits);
        double[] out = new double[logits.length];
        for (int i = 0; i < logits.length; i++) {
            out[i] = logits[i] - log;
        }
        return out;
    }

    /** KL(p || q) from log-probabilities. */
    public static double kl(double[] logP, double[] logQ) {
        double s = 0;
        for (int i = 0; i < logP.length; i++) {
            double p = Math.exp(logP[i]);
            if (p > 0) {
                s += p * (logP[i] - logQ[i]);
            }
        }
        return Math.max(0, s);
    }

    public static int argmax(double[] x) {
        int best = 0;
        for (int i = 1; i < x.length; i++) {
            if (x[i] > x[best]) {
                best = i;
            }
        }
        return best;
    }
}
