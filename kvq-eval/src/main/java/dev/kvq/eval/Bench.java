package dev.kvq.eval;

import com.fasterxml.jackson.annotation.JsonIgnore;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.annotation.JsonPropertyOrder;
import dev.kvq.KvqException;
import dev.kvq.config.Placement;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.Sampler;
import dev.kvq.generate.spi.Decoder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/**
 * Speed and memory per context length and cache configuration, in one run: prefill {@code batch} sequences with the
 * first {@code context} tokens of a text, then greedy decode steps for all of them together; prefill time, decode
 * tokens/s (over the batch), bytes held, bytes moved between host and runtime per step, and device memory.
 */
public final class Bench {
    private Bench() {
    }

    /**
     * One measurement (JSON field names as {@code kvq bench --json} prints them).
     *
     * @param batch sequences decoded together
     * @param bytesHeld bytes all the batch's caches hold, as kvq counts them
     * @param deviceBytes bytes the caches hold in the runtime's memory (placement device), else 0
     * @param transferBytesPerStep bytes moved between host memory and the runtime per decode step, averaged
     * @param peakDeviceBytes the most bytes the runtime's memory held for the caches, else 0
     * @param deviceBytesInUse bytes in use on the whole device after the run where the runtime tells, else null
     */
    @JsonPropertyOrder({"config", "placement", "batch", "context", "prefill_ms", "decode_tokens_per_s", "kv_bytes",
        "kv_bytes_fp16", "bytes_per_token", "avg_bits", "kv_device_bytes", "transfer_bytes_per_step",
        "peak_device_bytes", "device_bytes_in_use", "materialize_ms_per_step", "forward_ms_per_step",
        "append_ms_per_step"})
    public record Row(String config, @JsonIgnore Placement placement, int batch, int context,
                      @JsonProperty("prefill_ms") double prefillMillis,
                      @JsonProperty("decode_tokens_per_s") double decodeTokensPerSecond,
                      @JsonProperty("kv_bytes") long bytesHeld, @JsonProperty("kv_bytes_fp16") long bytesFp16,
                      @JsonIgnore int tokensHeld, @JsonProperty("avg_bits") Double avgBits,
                      @JsonProperty("materialize_ms_per_step") double materializeMillisPerStep,
                      @JsonProperty("forward_ms_per_step") double forwardMillisPerStep,
                      @JsonProperty("append_ms_per_step") double appendMillisPerStep,
                      @JsonProperty("kv_device_bytes") long deviceBytes,
                      @JsonProperty("transfer_bytes_per_step") double transferBytesPerStep,
                      @JsonProperty("peak_device_bytes") long peakDeviceBytes,
                      @JsonProperty("device_bytes_in_use") Long deviceBytesInUse) {
        @JsonProperty("placement")
        public String placementId() {
            return placement.id();
        }

        /** Bytes per token of one sequence. */
        @JsonProperty("bytes_per_token")
        public double bytesPerToken() {
            return tokensHeld == 0 ? 0 : bytesHeld / (double) tokensHeld / batch;
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
        return run(decoder, configs, contexts, tokens, decodeSteps, repeats, 1, 0, progress);
    }

    /** As {@link #run(Decoder, Map, int[], int[], int, int, Progress)}, for {@code batch} sequences at once. */
    /**
     * As {@link #run(Decoder, Map, int[], int[], int, int, Progress)}, for {@code batch} sequences at once, prompts
     * prefilled in chunks of {@code prefillChunk} tokens (0: whole).
     */
    public static List<Row> run(Decoder decoder, Map<String, CacheFactory> configs, int[] contexts, int[] tokens,
                                int decodeSteps, int repeats, int batch, int prefillChunk, Progress progress) {
        return run(decoder, configs, contexts, tokens, 0, decodeSteps, repeats, batch, prefillChunk, progress);
    }

    /**
     * As {@link #run(Decoder, Map, int[], int[], int, int, int, int, Progress)}, each run first decoding
     * {@code warmupSteps} untimed steps: the JVM compiles a decode step's host code only after some tens of steps, and
     * the timed steps should run what a long-running server runs.
     */
    public static List<Row> run(Decoder decoder, Map<String, CacheFactory> configs, int[] contexts, int[] tokens,
                                int warmupSteps, int decodeSteps, int repeats, int batch, int prefillChunk,
                                Progress progress) {
        checkContexts(contexts, tokens);
        List<Row> rows = new ArrayList<>();
        try (Progress.Task task = progress.start("bench", (long) contexts.length * configs.size())) {
            for (int context : contexts) {
                int[] prompt = Arrays.copyOf(tokens, context);
                for (Map.Entry<String, CacheFactory> e : configs.entrySet()) {
                    rows.add(best(decoder, e.getKey(), e.getValue(), prompt, warmupSteps, decodeSteps, repeats, batch,
                            prefillChunk));
                    task.step(1);
                }
            }
        }
        return rows;
    }

    /**
     * The paper's maximum-throughput measure: for each configuration, the largest batch whose caches (bytes as kvq
     * counts them, at {@code context} plus the warm-up and decode steps) fit {@code kvMemoryBytes}, and its decode
     * speed. The full-precision cache counts as it would be held in the model's K/V dtype.
     */
    public static List<Row> capacity(Decoder decoder, Map<String, CacheFactory> configs, int context, int[] tokens,
                                     int warmupSteps, int decodeSteps, int repeats, long kvMemoryBytes, int maxBatch,
                                     int prefillChunk, Progress progress) {
        checkContexts(new int[] {context}, tokens);
        int[] prompt = Arrays.copyOf(tokens, context);
        List<Row> rows = new ArrayList<>();
        try (Progress.Task task = progress.start("capacity", configs.size())) {
            for (Map.Entry<String, CacheFactory> e : configs.entrySet()) {
                int steps = warmupSteps + decodeSteps;
                long perSequence = bytesPerSequence(decoder, e.getValue(), context, steps, prefillChunk);
                int batch = (int) Math.min(maxBatch, kvMemoryBytes / perSequence);
                if (batch < 1) {
                    throw KvqException.config("one sequence of " + (context + steps) + " tokens under "
                            + e.getKey() + " needs " + perSequence + " bytes of cache, more than --kv-memory "
                            + kvMemoryBytes + "; give more memory or a shorter context");
                }
                rows.add(best(decoder, e.getKey(), e.getValue(), prompt, warmupSteps, decodeSteps, repeats, batch,
                        prefillChunk));
                task.step(1);
            }
        }
        return rows;
    }

    /**
     * Bytes one sequence's cache holds after a prefill of {@code context} tokens (in chunks of {@code prefillChunk}, 0:
     * whole) and {@code steps} single decoded tokens, as the run fills it, measured on a cache fed random K/V.
     */
    static long bytesPerSequence(Decoder decoder, CacheFactory caches, int context, int steps, int prefillChunk) {
        var config = decoder.config();
        if (caches.plan() == null) {
            // full precision: what a cache in the model's K/V dtype holds
            long fp16 = (long) (context + steps) * config.layers() * 2 * 2 * config.kvHeads() * config.headDim();
            return decoder.halfKv() ? fp16 : fp16 * 2;
        }
        return caches.bytesHeldAfter(config.shape(), context, steps, prefillChunk);
    }

    private static void checkContexts(int[] contexts, int[] tokens) {
        for (int c : contexts) {
            if (c > tokens.length) {
                throw KvqException.config("context " + c + " needs " + c + " tokens of text, the text gives "
                        + tokens.length);
            }
            if (c < 1) {
                throw KvqException.config("contexts must be positive, was " + c);
            }
        }
    }

    private static Row best(Decoder decoder, String name, CacheFactory caches, int[] prompt, int warmupSteps,
                            int decodeSteps, int repeats, int batch, int prefillChunk) {
        Row best = null;
        double prefill = Double.MAX_VALUE;
        for (int r = repeats == 0 ? 0 : -1; r < Math.max(1, repeats); r++) {
            Row row = once(decoder, name, caches, prompt, warmupSteps, decodeSteps, batch, prefillChunk);
            if (r < 0) {
                continue;
            }
            prefill = Math.min(prefill, row.prefillMillis());
            if (best == null || row.decodeTokensPerSecond() > best.decodeTokensPerSecond()) {
                best = row;
            }
        }
        return new Row(best.config(), best.placement(), best.batch(), best.context(), prefill,
                best.decodeTokensPerSecond(), best.bytesHeld(), best.bytesFp16(), best.tokensHeld(), best.avgBits(),
                best.materializeMillisPerStep(), best.forwardMillisPerStep(), best.appendMillisPerStep(),
                best.deviceBytes(), best.transferBytesPerStep(), best.peakDeviceBytes(), best.deviceBytesInUse());
    }

    private static Row once(Decoder decoder, String name, CacheFactory caches, int[] prompt, int warmupSteps, int steps,
                            int batch, int prefillChunk) {
        try (DecodeSession s = caches.session(decoder, batch)) {
            s.reserve(prompt.length + warmupSteps + steps);
            long t0 = System.nanoTime();
            float[][][] logits = new float[batch][][];
            int chunk = prefillChunk > 0 ? prefillChunk : prompt.length;
            int alone = Math.min(chunk, s.tokensPerStep(1, prompt.length));
            if (s.placement() == Placement.DEVICE && alone < prompt.length) {
                // a step over the device store runs every row once the sequences hold tokens (its layout has no row
                // subsets then), so prompts longer than a chunk are prefilled together, chunk by chunk (the session
                // splits a chunk further where the runtime needs it)
                int[][] feed = new int[batch][];
                for (int from = 0; from < prompt.length; from += chunk) {
                    Arrays.fill(feed, Arrays.copyOfRange(prompt, from, Math.min(prompt.length, from + chunk)));
                    logits = s.feed(feed, false);
                }
            } else {
                // each sequence is prefilled alone: a batch of long prompts at once can need more memory than
                // decoding it
                for (int b = 0; b < batch; b++) {
                    int[][] feed = new int[batch][];
                    for (int from = 0; from < prompt.length; from += alone) {
                        Arrays.fill(feed, new int[0]);
                        feed[b] = Arrays.copyOfRange(prompt, from, Math.min(prompt.length, from + alone));
                        logits[b] = s.feed(feed, false)[b];
                    }
                }
            }
            long prefillNanos = System.nanoTime() - t0;
            int[][] next = new int[batch][1];
            logits = decode(s, logits, next, warmupSteps);
            long t1 = System.nanoTime();
            DecodeSession.Timings before = s.timings();
            long transferBefore = s.transferBytes();
            logits = decode(s, logits, next, steps);
            long t2 = System.nanoTime();
            DecodeSession.Timings after = s.timings();
            double perStep = Math.max(1, steps);
            long held = 0;
            long fp16 = 0;
            for (int b = 0; b < batch; b++) {
                held += s.cache(b).bytesHeld();
                fp16 += s.cache(b).bytesFp16();
            }
            var inUse = s.deviceBytesInUse();
            return new Row(name, s.placement(), batch, prompt.length, prefillNanos / 1e6,
                    (double) steps * batch / ((t2 - t1) / 1e9), held, fp16, s.cache(0).length(0),
                    caches.plan() == null ? null : caches.plan().averageBits(),
                    (after.materializeNanos() - before.materializeNanos()) / 1e6 / perStep,
                    (after.forwardNanos() - before.forwardNanos()) / 1e6 / perStep,
                    (after.appendNanos() - before.appendNanos()) / 1e6 / perStep,
                    s.deviceBytes(), (s.transferBytes() - transferBefore) / perStep, s.peakDeviceBytes(),
                    inUse.isPresent() ? inUse.getAsLong() : null);
        }
    }

    /** Decodes {@code steps} greedy steps from {@code logits} (each sequence's last position); returns the last ones. */
    private static float[][][] decode(DecodeSession s, float[][][] logits, int[][] next, int steps) {
        float[][][] last = logits;
        for (int i = 0; i < steps; i++) {
            for (int b = 0; b < next.length; b++) {
                next[b][0] = Sampler.argmax(last[b][0]);
            }
            last = s.feed(next, false);
        }
        return last;
    }
}
