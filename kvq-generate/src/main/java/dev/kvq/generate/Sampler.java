package dev.kvq.generate;

import java.util.SplittableRandom;

/**
 * Picks tokens from logits under {@link SamplingParams}; one instance per sequence, seeded by (seed, sequence).
 * Sampling ranks the candidates by logit (highest first, the lower id first on ties), keeps the {@code topK} best,
 * then the smallest prefix whose probability reaches {@code topP}, and draws from what is left. The ranking works
 * on primitive keys in buffers the sampler keeps, so a sampled token allocates nothing. Not thread-safe.
 */
public final class Sampler {
    private final SamplingParams params;
    private final SplittableRandom random;
    /** Candidates as {@link #key} values; the first {@code keep} are ranked after {@link #rank}. */
    private long[] ranked = new long[0];
    private double[] weights = new double[0];

    public Sampler(SamplingParams params, int sequence) {
        this.params = params;
        this.random = new SplittableRandom(params.seed() * 1_000_003L + sequence);
    }

    /** The greedy choice: the highest logit, the lowest id on ties. */
    public static int argmax(float[] logits) {
        int best = 0;
        for (int i = 1; i < logits.length; i++) {
            if (logits[i] > logits[best]) {
                best = i;
            }
        }
        return best;
    }

    public int next(float[] logits) {
        if (params.isGreedy()) {
            return argmax(logits);
        }
        int n = logits.length;
        int keep = params.topK() > 0 ? Math.min(params.topK(), n) : n;
        if (ranked.length < n) {
            ranked = new long[n];
            weights = new double[n];
        }
        rank(logits, keep);
        double max = logits[id(ranked[0])];
        double[] p = weights;
        double sum = 0;
        for (int i = 0; i < keep; i++) {
            p[i] = Math.exp((logits[id(ranked[i])] - max) / params.temperature());
            sum += p[i];
        }
        if (params.topP() < 1) {
            double cumulative = 0;
            int cut = keep;
            for (int i = 0; i < keep; i++) {
                cumulative += p[i] / sum;
                if (cumulative >= params.topP()) {
                    cut = i + 1;
                    break;
                }
            }
            keep = cut;
            sum = 0;
            for (int i = 0; i < keep; i++) {
                sum += p[i];
            }
        }
        double r = random.nextDouble() * sum;
        for (int i = 0; i < keep; i++) {
            r -= p[i];
            if (r <= 0) {
                return id(ranked[i]);
            }
        }
        return id(ranked[keep - 1]);
    }

    /**
     * Puts the {@code keep} best candidates, best first, into {@code ranked[0, keep)}: a max-heap of the {@code keep}
     * smallest keys over all logits, then sorted in place (heapsort), O(n log keep) without allocation.
     */
    private void rank(float[] logits, int keep) {
        long[] heap = ranked;
        for (int i = 0; i < keep; i++) {
            heap[i] = key(logits[i], i);
        }
        for (int i = keep / 2 - 1; i >= 0; i--) {
            siftDown(heap, i, keep);
        }
        for (int i = keep; i < logits.length; i++) {
            long k = key(logits[i], i);
            if (k < heap[0]) {
                heap[0] = k;
                siftDown(heap, 0, keep);
            }
        }
        for (int end = keep - 1; end > 0; end--) {
            long top = heap[0];
            heap[0] = heap[end];
            heap[end] = top;
            siftDown(heap, 0, end);
        }
    }

    private static void siftDown(long[] heap, int i, int size) {
        long value = heap[i];
        while (true) {
            int child = 2 * i + 1;
            if (child >= size) {
                break;
            }
            if (child + 1 < size && heap[child + 1] > heap[child]) {
                child++;
            }
            if (heap[child] <= value) {
                break;
            }
            heap[i] = heap[child];
            i = child;
        }
        heap[i] = value;
    }

    /**
     * A key whose ascending order is descending logit (in {@link Float#compare}'s order), then ascending id: the
     * logit's bits made monotonic as a signed int and inverted, above the id.
     */
    static long key(float logit, int id) {
        int bits = Float.floatToIntBits(logit);
        int monotonic = bits ^ ((bits >> 31) & 0x7fffffff);
        return ((long) ~monotonic << 32) | (id & 0xffffffffL);
    }

    private static int id(long key) {
        return (int) key;
    }
}
