package dev.kvq.eval;

import dev.kvq.cache.KvCache;
import dev.kvq.config.PrecisionPlan;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.spi.Decoder;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.annotation.JsonPropertyOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Teacher-forced likelihood of text windows through a quantized cache ({@link TeacherForcing}), side by side with
 * the full-precision cache. Every scored prediction comes from a decode step over the cache's (quantized) past:
 * tokens {@code prefill+1 .. window-1} are scored. Both caches run in lockstep over the same
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

    /**
     * One configuration's line of {@code kvq eval ppl/agree} (JSON field names as the command prints them); the fp
     * fields, KL and agreement are null without the full-precision run, the bits null for full precision itself.
     */
    @JsonPropertyOrder({"config", "ppl", "nll", "tokens", "fp_ppl", "avg_k_bits", "avg_v_bits", "kv_bytes",
        "kv_bytes_fp16", "bytes_per_token", "mean_kl", "top1_agreement"})
    public record Row(String config, double ppl, double nll, long tokens, @JsonProperty("fp_ppl") Double fpPpl,
                      @JsonProperty("avg_k_bits") Double avgKeyBits, @JsonProperty("avg_v_bits") Double avgValueBits,
                      @JsonProperty("kv_bytes") long kvBytes, @JsonProperty("kv_bytes_fp16") long kvBytesFp16,
                      @JsonProperty("bytes_per_token") double bytesPerToken, @JsonProperty("mean_kl") Double meanKl,
                      @JsonProperty("top1_agreement") Double top1Agreement) {
        /** A result as a row; bytes per token are the peak bytes over the tokens a window's cache holds at the end. */
        public static Row of(String config, Result r, int window) {
            return new Row(config, r.ppl(), r.nll(), r.tokens(), r.fpPpl(), r.avgKeyBits(), r.avgValueBits(),
                    r.peakKvBytes(), r.kvBytesFp16(), r.peakKvBytes() / (double) Math.max(1, window - 1), r.meanKl(),
                    r.top1Agreement());
        }

        /** Average of key and value bits, or null for the full-precision cache. */
        public Double avgBits() {
            return avgKeyBits == null ? null : (avgKeyBits + avgValueBits) / 2;
        }

        /** Perplexity relative to full precision ({@code ppl / fp_ppl - 1}), or null without the fp run. */
        public Double vsFp() {
            return fpPpl == null ? null : ppl / fpPpl - 1;
        }
    }

    /**
     * Every named configuration over the same windows, in order; with none, the full-precision cache alone (named
     * {@code fp}, without the fp side run).
     */
    public static List<Row> sweep(Decoder decoder, Map<String, CacheFactory> configs, List<int[]> windows,
                                  Options options, Progress progress) {
        List<Row> rows = new ArrayList<>();
        int window = windows.getFirst().length;
        if (configs.isEmpty()) {
            rows.add(Row.of("fp", run(decoder, CacheFactory.fullPrecision(decoder.config().shape()), windows,
                    new Options(options.prefill(), options.batch(), false), progress), window));
        }
        configs.forEach((name, caches) -> rows.add(Row.of(name, run(decoder, caches, windows, options, progress),
                window)));
        return rows;
    }

    public static Result run(Decoder decoder, CacheFactory caches, List<int[]> windows, Options options,
                             Progress progress) {
        int window = windows.getFirst().length;
        if (options.prefill() >= window - 1) {
            throw dev.kvq.KvqException.config("prefill (" + options.prefill() + ") must leave at least two tokens of the "
                    + window + "-token window to score");
        }
        CacheFactory fp = options.withFp() ? CacheFactory.fullPrecision(decoder.config().shape()) : null;
        Totals t = new Totals();
        try (Progress.Task task = progress.start("windows", windows.size())) {
            TeacherForcing.run(decoder, caches, fp, windows, new TeacherForcing.Options(options.prefill(),
                    options.batch(), false), new TeacherForcing.Sink() {
                        @Override
                        public void accept(int w, int target, float[] logits, float[] reference) {
                            int token = windows.get(w)[target];
                            double[] logQ = Distributions.logSoftmax(logits);
                            t.nll -= logQ[token];
                            if (reference != null) {
                                double[] logP = Distributions.logSoftmax(reference);
                                t.fpNll -= logP[token];
                                t.kl += Distributions.kl(logP, logQ);
                                t.agree += Distributions.argmax(logP) == Distributions.argmax(logQ) ? 1 : 0;
                            }
                            t.tokens++;
                        }

                        @Override
                        public void batchDone(int first, List<KvCache> held) {
                            for (KvCache c : held) {
                                t.peak = Math.max(t.peak, c.bytesHeld());
                                t.fp16 = Math.max(t.fp16, c.bytesFp16());
                            }
                            task.step(held.size());
                            task.message(String.format("ppl %.4f", Math.exp(t.nll / t.tokens)));
                        }
                    });
        }
        PrecisionPlan plan = caches.plan();
        boolean withFp = fp != null;
        return new Result(t.tokens, t.nll / t.tokens, withFp ? t.fpNll / t.tokens : null, withFp ? t.kl / t.tokens : null,
                withFp ? t.agree / (double) t.tokens : null, t.peak, t.fp16, plan == null ? null : plan.averageKeyBits(),
                plan == null ? null : plan.averageValueBits(), windows.size());
    }

    /** Running sums of one evaluation. */
    private static final class Totals {
        double nll;
        double fpNll;
        double kl;
        long agree;
        long tokens;
        long peak;
        long fp16;
    }

    /**
     * The reference: mean NLL of the same scored tokens from one full-sequence forward per window (no cache at all;
     * every position attends to the exact K/V computed in the same pass).
     */
    public static double fullForwardNll(Decoder decoder, List<int[]> windows, int prefill) {
        double nll = 0;
        long tokens = 0;
        for (int[] w : windows) {
            try (DecodeSession s = CacheFactory.fullPrecision(decoder.config().shape()).session(decoder, 1)) {
                float[][] logits = s.feed(new int[][] {w}, true)[0];
                for (int pos = prefill; pos < w.length - 1; pos++) {
                    nll -= Distributions.logSoftmax(logits[pos])[w[pos + 1]];
                    tokens++;
                }
            }
        }
        return nll / tokens;
    }
}
