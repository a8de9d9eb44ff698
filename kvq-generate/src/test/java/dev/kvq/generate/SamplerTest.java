package dev.kvq.generate;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.IntStream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.Test;

/**
 * The sampler against a reference written here from the definition: rank by logit (the lower id first on ties),
 * keep the top k, softmax at the temperature, keep the smallest prefix reaching top p, renormalize, and take the
 * first token whose cumulative probability reaches the uniform draw. The draws are the sampler's documented stream
 * ({@code SplittableRandom(seed * 1000003 + sequence)}), so every draw is compared, not a histogram.
 */
class SamplerTest {
    @ParameterizedTest
    @CsvSource({"1.0, 0, 1.0", "0.7, 0, 1.0", "1.3, 5, 1.0", "0.8, 0, 0.9", "0.8, 40, 0.9", "2.0, 1, 1.0",
        "0.5, 3, 0.5"})
    void everyDrawEqualsTheReference(double temperature, int topK, double topP) {
        for (int vocab : new int[] {7, 300, 5000}) {
            float[] logits = logits(vocab, vocab);
            SamplingParams params = new SamplingParams(temperature, topK, topP, 11);
            Sampler sampler = new Sampler(params, 3);
            SplittableRandom draws = new SplittableRandom(11 * 1_000_003L + 3);
            Reference reference = new Reference(logits, params);
            for (int i = 0; i < 500; i++) {
                int expected = reference.draw(draws.nextDouble());
                assertEquals(expected, sampler.next(logits), "draw " + i + " of vocabulary " + vocab);
            }
        }
    }

    @Test
    void tiesRankTheLowerIdFirstAndTopOneIsTheArgmax() {
        float[] logits = {1f, 3f, 3f, 0f, 3f};
        Sampler topOne = new Sampler(new SamplingParams(1.0, 1, 1.0, 5), 0);
        for (int i = 0; i < 50; i++) {
            assertEquals(1, topOne.next(logits));
        }
        assertEquals(1, Sampler.argmax(logits));
        assertEquals(1, new Sampler(SamplingParams.greedy(), 0).next(logits));
    }

    @Test
    void rankingKeyOrdersLikeFloatCompareDescendingThenIdAscending() {
        float[] special = {Float.NaN, Float.POSITIVE_INFINITY, Float.MAX_VALUE, 1f, Float.MIN_VALUE, 0f, -0f,
            -Float.MIN_VALUE, -1f, -Float.MAX_VALUE, Float.NEGATIVE_INFINITY};
        List<float[]> values = new ArrayList<>();
        for (float f : special) {
            values.add(new float[] {f});
        }
        new SplittableRandom(2).doubles(200, -50, 50).forEach(d -> values.add(new float[] {(float) d}));
        for (float[] a : values) {
            for (float[] b : values) {
                for (int ia : new int[] {0, 7}) {
                    for (int ib : new int[] {0, 7}) {
                        int expected = Float.compare(b[0], a[0]) != 0 ? Float.compare(b[0], a[0])
                                : Integer.compare(ia, ib);
                        int actual = Long.compare(Sampler.key(a[0], ia), Sampler.key(b[0], ib));
                        assertEquals(Integer.signum(expected), Integer.signum(actual), a[0] + "#" + ia + " vs " + b[0]
                                + "#" + ib);
                    }
                }
            }
        }
    }

    @Test
    void sameSeedAndSequenceGiveTheSameTokensOtherSequencesDiffer() {
        float[] logits = logits(500, 2);
        SamplingParams p = new SamplingParams(1.0, 0, 1.0, 42);
        Sampler a = new Sampler(p, 0);
        Sampler b = new Sampler(p, 0);
        Sampler c = new Sampler(p, 1);
        int same = 0;
        for (int i = 0; i < 200; i++) {
            int x = a.next(logits);
            assertEquals(x, b.next(logits));
            same += x == c.next(logits) ? 1 : 0;
        }
        assertTrue(same < 100, "sequence 1 drew the same token as sequence 0 " + same + " times of 200");
    }

    @Test
    void samplingAllocatesNothingPerToken() {
        float[] logits = logits(32_000, 9);
        Sampler s = new Sampler(new SamplingParams(0.8, 0, 0.9, 1), 0);
        s.next(logits);
        long before = allocated();
        for (int i = 0; i < 50; i++) {
            s.next(logits);
        }
        long bytes = allocated() - before;
        assertTrue(bytes < 1024, "50 sampled tokens allocated " + bytes + " bytes");
    }

    private static long allocated() {
        return ((com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean()).getCurrentThreadAllocatedBytes();
    }

    private static float[] logits(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            // a few exact ties, so the tie rule matters
            out[i] = i % 50 == 7 ? 2.5f : (float) (r.nextGaussian() * 2);
        }
        return out;
    }

    /** The definition, with a boxed stable sort and normalized probabilities. */
    private static final class Reference {
        private final List<Integer> kept;
        private final double[] cumulative;

        Reference(float[] logits, SamplingParams p) {
            List<Integer> ranked = IntStream.range(0, logits.length).boxed()
                    .sorted(Comparator.comparingDouble((Integer i) -> logits[i]).reversed().thenComparingInt(i -> i))
                    .toList();
            int k = p.topK() > 0 ? Math.min(p.topK(), logits.length) : logits.length;
            ranked = ranked.subList(0, k);
            double max = logits[ranked.getFirst()];
            double[] prob = new double[k];
            double total = 0;
            for (int i = 0; i < k; i++) {
                prob[i] = Math.exp((logits[ranked.get(i)] - max) / p.temperature());
                total += prob[i];
            }
            int nucleus = k;
            double c = 0;
            for (int i = 0; i < k; i++) {
                c += prob[i] / total;
                if (c >= p.topP()) {
                    nucleus = i + 1;
                    break;
                }
            }
            double kept = 0;
            for (int i = 0; i < nucleus; i++) {
                kept += prob[i];
            }
            this.kept = ranked.subList(0, nucleus);
            this.cumulative = new double[nucleus];
            c = 0;
            for (int i = 0; i < nucleus; i++) {
                c += prob[i] / kept;
                cumulative[i] = c;
            }
        }

        /** The first kept token whose cumulative probability reaches {@code u}. */
        int draw(double u) {
            for (int i = 0; i < cumulative.length; i++) {
                if (cumulative[i] >= u) {
                    return kept.get(i);
                }
            }
            return kept.getLast();
        }
    }
}
