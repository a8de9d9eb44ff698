package dev.kvq.eval;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.annotation.JsonPropertyOrder;
import com.fasterxml.jackson.databind.JsonNode;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.cache.ForwardingKvCache;
import dev.kvq.cache.KvCache;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Generator;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.spi.Decoder;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Passkey retrieval: each prompt hides facts {@code key:12345.} in filler text and ends with {@code recall: key:};
 * greedy generation, and the first five generated characters must equal {@code answer[:5]}. KV errors show up as
 * lost answers, as they do on GSM8K for large models.
 */
public final class Passkey {
    private Passkey() {
    }

    public record Item(String prompt, String answer) {
    }

    public record Result(int n, int correct, long peakKvBytes, long kvBytesFp16, boolean[] outcomes) {
        public double accuracy() {
            return n == 0 ? 0 : correct / (double) n;
        }
    }

    /** One configuration's line of {@code kvq eval passkey} (JSON field names as the command prints them). */
    @JsonPropertyOrder({"config", "accuracy", "fp_accuracy", "n", "avg_k_bits", "avg_v_bits", "kv_bytes",
        "kv_bytes_fp16"})
    public record Row(String config, double accuracy, @JsonProperty("fp_accuracy") Double fpAccuracy, int n,
                      @JsonProperty("avg_k_bits") double avgKeyBits, @JsonProperty("avg_v_bits") double avgValueBits,
                      @JsonProperty("kv_bytes") long kvBytes, @JsonProperty("kv_bytes_fp16") long kvBytesFp16) {
        public double avgBits() {
            return (avgKeyBits + avgValueBits) / 2;
        }
    }

    /** The full-precision accuracy (null when not run) and one row per quantized configuration. */
    public record Sweep(Double fpAccuracy, int n, List<Row> rows) {
    }

    /**
     * Runs the full-precision cache (with {@code withFp}) and every named quantized configuration on the same items.
     */
    public static Sweep sweep(Decoder decoder, Tokenizer tokenizer, boolean withFp, Map<String, CacheFactory> configs,
                              List<Item> items, int batch, Progress progress) {
        Double fp = withFp ? run(decoder, tokenizer, CacheFactory.fullPrecision(decoder.config().shape()), items, batch,
                progress).accuracy() : null;
        List<Row> rows = new ArrayList<>();
        for (Map.Entry<String, CacheFactory> e : configs.entrySet()) {
            CacheFactory f = e.getValue();
            Result r = run(decoder, tokenizer, f, items, batch, progress);
            rows.add(new Row(e.getKey(), r.accuracy(), fp, r.n(), f.plan().averageKeyBits(), f.plan().averageValueBits(),
                    r.peakKvBytes(), r.kvBytesFp16()));
        }
        return new Sweep(fp, items.size(), rows);
    }

    /** Items {@code [offset, offset + limit)} of a jsonl file of {@code {"prompt", "answer"}}. */
    public static List<Item> read(Path jsonl, int offset, int limit) {
        List<Item> out = new ArrayList<>();
        try {
            List<String> lines = Files.readAllLines(jsonl);
            for (int i = offset; i < lines.size() && (limit <= 0 || out.size() < limit); i++) {
                if (lines.get(i).isBlank()) {
                    continue;
                }
                JsonNode n = JsonLines.object(jsonl, i + 1, lines.get(i));
                if (!n.hasNonNull("prompt") || !n.hasNonNull("answer")) {
                    throw new KvqException(ErrorCode.CORRUPT_DATA, jsonl + " line " + (i + 1) + " lacks prompt or answer");
                }
                out.add(new Item(n.get("prompt").asText(), n.get("answer").asText()));
            }
        } catch (IOException e) {
            throw KvqException.cannotRead(jsonl, e);
        }
        if (out.isEmpty()) {
            throw KvqException.config(jsonl + " has no items from offset " + offset);
        }
        return out;
    }

    public static Result run(Decoder decoder, Tokenizer tokenizer, CacheFactory caches, List<Item> items, int batch,
                             Progress progress) {
        CountingCaches counting = new CountingCaches(caches);
        Generator generator = new Generator(decoder, tokenizer, counting);
        boolean[] outcomes = new boolean[items.size()];
        int correct = 0;
        try (Progress.Task task = progress.start("passkey", items.size())) {
            for (int from = 0; from < items.size(); from += batch) {
                List<Item> part = items.subList(from, Math.min(items.size(), from + batch));
                List<Generator.Result> results = generator.generate(part.stream().map(Item::prompt).toList(),
                        Generator.Options.greedy(5), null).results();
                for (int i = 0; i < part.size(); i++) {
                    String got = results.get(i).text();
                    String want = part.get(i).answer();
                    boolean ok = got.length() >= 5 && want.length() >= 5 && got.substring(0, 5).equals(want.substring(0, 5));
                    outcomes[from + i] = ok;
                    correct += ok ? 1 : 0;
                }
                task.step(part.size());
                task.message(String.format("accuracy %.3f", correct / (double) (from + part.size())));
            }
        }
        return new Result(items.size(), correct, counting.peak, counting.peakFp16, outcomes);
    }

    /** Records the largest number of bytes any one sequence's cache held. */
    private static final class CountingCaches implements CacheFactory {
        private final CacheFactory inner;
        long peak;
        long peakFp16;

        CountingCaches(CacheFactory inner) {
            this.inner = inner;
        }

        @Override
        public KvCache newCache() {
            return new ForwardingKvCache(inner.newCache()) {
                @Override
                public void close() {
                    peak = Math.max(peak, bytesHeld());
                    peakFp16 = Math.max(peakFp16, bytesFp16());
                    super.close();
                }
            };
        }

        @Override
        public dev.kvq.config.PrecisionPlan plan() {
            return inner.plan();
        }

        @Override
        public String describe() {
            return inner.describe();
        }

        @Override
        public dev.kvq.config.Placement placement() {
            return inner.placement();
        }
    }
}
