package dev.kvq.eval;

import dev.kvq.cache.KvCache;
import dev.kvq.config.PrecisionPlan;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.spi.Decoder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Teacher-forced likelihood of text windows through a quantized cache, side by side with the full-precision cache.
 * In each window the first {@code prefill} tokens are the prompt; then each true token is fed by a decode step, and
 * the logits of that step predict the next token, so every scored prediction comes from a decode step over the
 * cache's (quantized) past: tokens {@code prefill+1 .. window-1} are scored. Both caches run in lockstep over the same
 * windows, which also gives the KL divergence and top-1 agreement of the two next-token distributions.
 */
public final class LikelihoodEval {
    private LikelihoodEval() {
    }

    /**
     * @param prefill prompt tokens per window
     * @param batch windows run together as one batch
     * @param withFp also run the full-precision cache (for fp perplexity, KL and agreement)
     */
    public record Options(int prefill, int batch, boolean withFp) {
        public Options {
            if (prefill < 1) {
                throw dev.kvq.KvqException.config("prefill must be at least 1 token, was " + prefill);
            }
            if (batch < 1) {
                throw dev.kvq.KvqException.config("batch must be at least 1, was " + batch);
            }
        }
    }

    /** Totals over all scored tokens; fp fields, KL and agreement are null without the fp run. */
    public record Result(long tokens, double nll, Double fpNll, Double meanKl, Double top1Agreement, long peakKvBytes,
                         long kvBytesFp16, Double avgKeyBits, Double avgValueBits, int windows) {
        public double ppl() {
            return Math.exp(nll);
        }

        public Double fpPpl() {
            return fpNll == null ? null : Math.exp(fpNll);
        }
    }

    public static Result run(Decoder decoder, CacheFactory caches, List<int[]> windows, Options options,
                             Progress progress) {
        int window = windows.getFirst().length;
        if (options.prefill() >= window - 1) {
            throw dev.kvq.KvqException.config("prefill (" + options.prefill() + ") must leave at least two tokens of the "
                    + window + "-token window to score");
        }
        CacheFactory fp = options.withFp() ? CacheFactory.fullPrecision(decoder.config().shape()) : null;
        double nll = 0;
        double fpNll = 0;
        double kl = 0;
        long agree = 0;
        long tokens = 0;
        long peak = 0;
        long fp16 = 0;
        try (Progress.Task task = progress.start("windows", windows.size())) {
            for (int from = 0; from < windows.size(); from += options.batch()) {
                List<int[]> batch = windows.subList(from, Math.min(windows.size(), from + options.batch()));
                int b = batch.size();
                try (DecodeSession q = session(decoder, caches, b); DecodeSession f = fp == null ? null
                        : session(decoder, fp, b)) {
                    int[][] feed = new int[b][];
                    for (int i = 0; i < b; i++) {
                        feed[i] = Arrays.copyOf(batch.get(i), options.prefill());
                    }
                    q.feed(feed, false);
                    if (f != null) {
                        f.feed(feed, false);
                    }
                    for (int pos = options.prefill(); pos < window - 1; pos++) {
                        for (int i = 0; i < b; i++) {
                            feed[i] = new int[] {batch.get(i)[pos]};
                        }
                        float[][][] lq = q.feed(feed, false);
                        float[][][] lf = f == null ? null : f.feed(feed, false);
                        for (int i = 0; i < b; i++) {
                            int target = batch.get(i)[pos + 1];
                            double[] logQ = Distributions.logSoftmax(lq[i][0]);
                            nll -= logQ[target];
                            if (lf != null) {
                                double[] logP = Distributions.logSoftmax(lf[i][0]);
                                fpNll -= logP[target];
                                kl += Distributions.kl(logP, logQ);
                                agree += Distributions.argmax(logP) == Distributions.argmax(logQ) ? 1 : 0;
                            }
                            tokens++;
                        }
                    }
                    for (int i = 0; i < b; i++) {
                        KvCache c = q.cache(i);
                        peak = Math.max(peak, c.bytesHeld());
                        fp16 = Math.max(fp16, c.bytesFp16());
                    }
                }
                task.step(b);
                task.message(String.format("ppl %.4f", Math.exp(nll / tokens)));
            }
        }
        PrecisionPlan plan = caches.plan();
        return new Result(tokens, nll / tokens, fp == null ? null : fpNll / tokens, fp == null ? null : kl / tokens,
                fp == null ? null : agree / (double) tokens, peak, fp16, plan == null ? null : plan.averageKeyBits(),
                plan == null ? null : plan.averageValueBits(), windows.size());
    }

    /**
     * The reference: mean NLL of the same scored tokens from one full-sequence forward per window (no cache at all;
     * every position attends to the exact K/V computed in the same pass).
     */
    public static double fullForwardNll(Decoder decoder, List<int[]> windows, int prefill) {
        double nll = 0;
        long tokens = 0;
        for (int[] w : windows) {
            try (DecodeSession s = session(decoder, CacheFactory.fullPrecision(decoder.config().shape()), 1)) {
                float[][] logits = s.feed(new int[][] {w}, true)[0];
                for (int pos = prefill; pos < w.length - 1; pos++) {
                    nll -= Distributions.logSoftmax(logits[pos])[w[pos + 1]];
                    tokens++;
                }
            }
        }
        return nll / tokens;
    }

    private static DecodeSession session(Decoder decoder, CacheFactory caches, int batch) {
        List<KvCache> list = new ArrayList<>(batch);
        for (int i = 0; i < batch; i++) {
            list.add(caches.newCache());
        }
        return new DecodeSession(decoder, list, caches.placement());
    }
}
