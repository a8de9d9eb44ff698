package dev.kvq.eval;

import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Generator;
import dev.kvq.generate.Sampler;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.spi.Decoder;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * One prompt continued greedily through several caches, each against the first (the reference, full precision
 * typically): memory, speed, how much of the text equals the reference's, and how often the cache's next-token choice
 * equals the reference's on the reference's own text ({@link TeacherForcing}). What {@code kvq demo} shows.
 */
public final class CacheComparison {
    private CacheComparison() {
    }

    /**
     * One cache's outcome.
     *
     * @param avgBits average KV bits, or null for the full-precision cache
     * @param tokensHeld tokens the cache holds at the end (the prompt and every fed generated token)
     * @param sameText share of the reference's characters equal to this text's at the same position
     * @param top1Agreement share of the reference text's positions where this cache's greedy choice equals the
     *     reference cache's, both reading the reference text
     * @param firstDifference the first character where the text differs from the reference's, or -1 when equal
     */
    public record Row(String name, Double avgBits, long kvBytes, long kvBytesFp16, int tokensHeld, double sameText,
                      double top1Agreement, double decodeTokensPerSecond, String text, int firstDifference) {
        public double bytesPerToken() {
            return kvBytes / (double) tokensHeld;
        }

        /** How many times smaller than a float16 cache of the same tokens. */
        public double vsFp16() {
            return kvBytesFp16 / (double) kvBytes;
        }
    }

    /**
     * Runs every cache in order; the first is the reference. Each generation runs {@code runs} times and keeps the
     * fastest (greedy, so every run gives the same text; the first also pays for the JIT).
     */
    public static List<Row> run(Decoder decoder, Tokenizer tokenizer, Map<String, CacheFactory> caches, String prompt,
                                int maxNewTokens, int runs) {
        List<Row> rows = new ArrayList<>();
        String reference = null;
        CacheFactory referenceCaches = null;
        for (Map.Entry<String, CacheFactory> e : caches.entrySet()) {
            Generator.Output o = null;
            for (int run = 0; run < Math.max(1, runs); run++) {
                Generator.Output next = new Generator(decoder, tokenizer, e.getValue()).generate(List.of(prompt),
                        Generator.Options.greedy(maxNewTokens), null);
                if (o == null || next.stats().decodeTokensPerSecond() > o.stats().decodeTokensPerSecond()) {
                    o = next;
                }
            }
            Generator.Result r = o.results().getFirst();
            if (reference == null) {
                reference = r.text();
                referenceCaches = e.getValue();
            }
            CacheFactory f = e.getValue();
            rows.add(new Row(e.getKey(), f.plan() == null ? null : f.plan().averageBits(), o.stats().kvBytes(),
                    o.stats().kvBytesFp16(), r.promptTokens() + r.tokens().length - 1, sameChars(reference, r.text()),
                    top1Agreement(decoder, tokenizer, f, referenceCaches, prompt, reference),
                    o.stats().decodeTokensPerSecond(), r.text(), firstDifference(reference, r.text())));
        }
        return rows;
    }

    /** Share of positions where the greedy choice through {@code caches} equals the one through {@code reference}. */
    static double top1Agreement(Decoder decoder, Tokenizer tokenizer, CacheFactory caches, CacheFactory reference,
                                String prompt, String text) {
        int[] p = tokenizer.encode(prompt);
        int[] t = tokenizer.encode(text);
        if (t.length == 0) {
            return 1;
        }
        int[] window = new int[p.length + t.length];
        System.arraycopy(p, 0, window, 0, p.length);
        System.arraycopy(t, 0, window, p.length, t.length);
        long[] same = new long[2];
        TeacherForcing.run(decoder, caches, reference, List.of(window), new TeacherForcing.Options(p.length, 1, true),
                (w, target, logits, ref) -> {
                    same[0] += Sampler.argmax(logits) == Sampler.argmax(ref) ? 1 : 0;
                    same[1]++;
                });
        return same[0] / (double) same[1];
    }

    static double sameChars(String a, String b) {
        int same = 0;
        for (int i = 0; i < a.length(); i++) {
            same += i < b.length() && a.charAt(i) == b.charAt(i) ? 1 : 0;
        }
        return a.isEmpty() ? 1 : same / (double) a.length();
    }

    static int firstDifference(String a, String b) {
        for (int i = 0; i < Math.min(a.length(), b.length()); i++) {
            if (a.charAt(i) != b.charAt(i)) {
                return i;
            }
        }
        return a.length() == b.length() ? -1 : Math.min(a.length(), b.length());
    }
}
