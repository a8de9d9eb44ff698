package dev.kvq.eval;

import com.fasterxml.jackson.annotation.JsonIgnore;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.annotation.JsonPropertyOrder;
import dev.kvq.KvqException;
import dev.kvq.cache.KvCache;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.Sampler;
import dev.kvq.generate.spi.Decoder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * Speed and memory per context length and cache configuration, in one run: prefill the first {@code context}
 * tokens of a text, then greedy decode steps; prefill time, decode tokens/s, bytes held and bytes per token.
 */
public final class Bench {
    private Bench() {
    }

    /** One measurement (JSON field names as {@code kvq bench --json} prints them). */
    @JsonPropertyOrder({"config", "context", "prefill_ms", "decode_tokens_per_s", "kv_bytes", "kv_bytes_fp16",
        "bytes_per_token", "avg_bits", "materialize_ms_per_step", "forward_ms_per_step", "append_ms_per_step"})
    public record Row(String config, int context, @JsonProperty("prefill_ms") double prefillMillis,
                      @JsonProperty("decode_tokens_per_s") double decodeTokensPerSecond,
                      @JsonProperty("kv_bytes") long bytesHeld, @JsonProperty("kv_bytes_fp16") long bytesFp16,
                      @JsonIgnore int tokensHeld, @JsonProperty("avg_bits") Double avgBits,
                      @JsonProperty("materialize_ms_per_step") double materializeMillisPerStep,
                      @JsonProperty("forward_ms_per_step") double forwardMillisPerStep,
                      @JsonProperty("append_ms_per_step") double appendMillisPerStep) {
        @JsonProperty("bytes_per_token")
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
}
