package dev.kvq.eval;

import dev.kvq.KvqException;
import dev.kvq.cache.KvCache;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.Sampler;
import dev.kvq.generate.spi.Decoder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Speed and memory per context length and cache configuration, in one run: prefill the first {@code context}
 * tokens of a text, then greedy decode steps; prefill time, decode tokens/s, bytes held and bytes per token.
 */
public final class Bench {
    private Bench() {
    }

    /** One measurement. */
    public record Row(String config, int context, double prefillMillis, double decodeTokensPerSecond, long bytesHeld,
                      long bytesFp16, int tokensHeld, Double avgBits, double materializeMillisPerStep,
                      double forwardMillisPerStep, double appendMillisPerStep) {
        public double bytesPerToken() {
            return tokensHeld == 0 ? 0 : bytesHeld / (double) tokensHeld;
        }
    }

    /**
     * @param tokens a long token sequence (at least the largest context)
     * @param decodeSteps decode steps timed after each prefill
     * @param repeats the prefill and decode are repeated after one warm-up run; the row keeps the fastest decode run
     *     and the fastest prefill (JIT-compiling runtimes may compile on a later run than the warm-up)
     */
    public static List<Row> run(Decoder decoder, Map<String, CacheFactory> configs, int[] contexts, int[] tokens,
                                int decodeSteps, int repeats, Progress progress) {
        for (int c : contexts) {
            if (c > tokens.length) {
                throw KvqException.config("context " + c + " needs " + c + " tokens of text, the text gives "
                        + tokens.length);
            }
            if (c < 1) {
                throw KvqException.config("contexts must be positive, was " + c);
            }
        }
        List<Row> rows = new ArrayList<>();
        try (Progress.Task task = progress.start("bench", (long) contexts.length * configs.size())) {
            for (int context : contexts) {
                int[] prompt = Arrays.copyOf(tokens, context);
                for (Map.Entry<String, CacheFactory> e : configs.entrySet()) {
                    Row best = null;
                    double prefill = Double.MAX_VALUE;
                    for (int r = -1; r < Math.max(1, repeats); r++) {
                        Row row = once(decoder, e.getKey(), e.getValue(), prompt, decodeSteps);
                        if (r < 0) {
                            continue;
                        }
                        prefill = Math.min(prefill, row.prefillMillis());
                        if (best == null || row.decodeTokensPerSecond() > best.decodeTokensPerSecond()) {
                            best = row;
                        }
                    }
                    rows.add(new Row(best.config(), best.context(), prefill, best.decodeTokensPerSecond(),
                            best.bytesHeld(), best.bytesFp16(), best.tokensHeld(), best.avgBits(),
                            best.materializeMillisPerStep(), best.forwardMillisPerStep(), best.appendMillisPerStep()));
                    task.step(1);
                }
            }
        }
        return rows;
    }

    private static Row once(Decoder decoder, String name, CacheFactory caches, int[] prompt, int steps) {
        KvCache cache = caches.newCache();
        try (DecodeSession s = new DecodeSession(decoder, List.of(cache))) {
            long t0 = System.nanoTime();
            float[][][] logits = s.feed(new int[][] {prompt}, false);
            long t1 = System.nanoTime();
            DecodeSession.Timings before = s.timings();
            for (int i = 0; i < steps; i++) {
                logits = s.feed(new int[][] {{Sampler.argmax(logits[0][0])}}, false);
            }
            long t2 = System.nanoTime();
            DecodeSession.Timings after = s.timings();
            double perStep = Math.max(1, steps);
            return new Row(name, prompt.length, (t1 - t0) / 1e6, steps / ((t2 - t1) / 1e9), cache.bytesHeld(),
                    cache.bytesFp16(), cache.length(0), caches.plan() == null ? null : caches.plan().averageBits(),
                    (after.materializeNanos() - before.materializeNanos()) / 1e6 / perStep,
                    (after.forwardNanos() - before.forwardNanos()) / 1e6 / perStep,
                    (after.appendNanos() - before.appendNanos()) / 1e6 / perStep);
        }
    }

    /** Rows as JSON-ready maps. */
    public static List<Map<String, Object>> toMaps(List<Row> rows) {
        List<Map<String, Object>> out = new ArrayList<>();
        for (Row r : rows) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("config", r.config());
            m.put("context", r.context());
            m.put("prefill_ms", r.prefillMillis());
            m.put("decode_tokens_per_s", r.decodeTokensPerSecond());
            m.put("kv_bytes", r.bytesHeld());
            m.put("kv_bytes_fp16", r.bytesFp16());
            m.put("bytes_per_token", r.bytesPerToken());
            m.put("avg_bits", r.avgBits());
            m.put("materialize_ms_per_step", r.materializeMillisPerStep());
            m.put("forward_ms_per_step", r.forwardMillisPerStep());
            m.put("append_ms_per_step", r.appendMillisPerStep());
            out.add(m);
        }
        return out;
    }
}
