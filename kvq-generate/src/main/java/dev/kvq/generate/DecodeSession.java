package dev.kvq.generate;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.cache.KvCache;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.spi.PastBuffers;
import dev.kvq.generate.spi.Step;
import dev.kvq.generate.spi.StepInput;
import dev.kvq.tensor.KvView;
import java.util.List;

/**
 * The prefill/decode loop shared by every runtime: a batch of sequences, each with its own KV cache. Each
 * {@link #feed} materializes every cache into the runtime's past buffers (left-padded to the longest), runs one
 * forward pass, and appends the new tokens' K/V to each cache, which quantizes them as its policy says.
 * Not thread-safe.
 */
public final class DecodeSession implements AutoCloseable {
    private final Decoder decoder;
    private final List<KvCache> caches;
    private final int layers;
    private final int vocab;
    private final int[] lengths;
    private long materializeNanos;
    private long forwardNanos;
    private long appendNanos;

    public DecodeSession(Decoder decoder, List<KvCache> caches) {
        if (caches.isEmpty()) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "a session needs at least one sequence");
        }
        this.decoder = decoder;
        this.caches = List.copyOf(caches);
        this.layers = decoder.config().layers();
        this.vocab = decoder.config().vocabSize();
        this.lengths = new int[caches.size()];
    }

    public int batch() {
        return caches.size();
    }

    /** Tokens held for sequence {@code b}. */
    public int length(int b) {
        return lengths[b];
    }

    public KvCache cache(int b) {
        return caches.get(b);
    }

    /**
     * Feeds {@code tokens[b]} to sequence {@code b} (an empty array leaves it untouched) and returns the logits of every
     * fed position ({@code allPositions}) or of the last one only.
     *
     * @return {@code logits[b][i]} for the i-th returned position of sequence b (vocabulary floats)
     */
    public float[][][] feed(int[][] tokens, boolean allPositions) {
        int batch = caches.size();
        if (tokens.length != batch) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, tokens.length + " token rows for " + batch + " sequences");
        }
        int t = 0;
        int p = 0;
        for (int b = 0; b < batch; b++) {
            t = Math.max(t, tokens[b].length);
            p = Math.max(p, lengths[b]);
        }
        if (t == 0) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "nothing to feed: every token row is empty");
        }
        long[] ids = new long[batch * t];
        long[] mask = new long[batch * (p + t)];
        long[] positions = new long[batch * t];
        for (int b = 0; b < batch; b++) {
            int pad = t - tokens[b].length;
            for (int i = 0; i < tokens[b].length; i++) {
                int id = tokens[b][i];
                if (id < 0 || id >= vocab) {
                    throw new KvqException(ErrorCode.TOKENIZER, "token id " + id + " is outside the model's vocabulary of "
                            + vocab);
                }
                ids[b * t + pad + i] = id;
                positions[b * t + pad + i] = lengths[b] + i;
                mask[b * (p + t) + p + pad + i] = 1;
            }
            for (int i = p - lengths[b]; i < p; i++) {
                mask[b * (p + t) + i] = 1;
            }
        }
        long start = System.nanoTime();
        PastBuffers past = decoder.past(batch, p);
        for (int b = 0; b < batch; b++) {
            int padPast = p - lengths[b];
            KvCache cache = caches.get(b);
            for (int l = 0; l < layers; l++) {
                KvView k = past.keys(l, b);
                KvView v = past.values(l, b);
                if (padPast > 0) {
                    k.tokens(0, padPast).zero();
                    v.tokens(0, padPast).zero();
                }
                if (lengths[b] > 0) {
                    cache.materialize(l, k.tokens(padPast, p), v.tokens(padPast, p));
                }
            }
        }
        long afterMaterialize = System.nanoTime();
        Step step = decoder.forward(new StepInput(batch, t, p, ids, mask, positions, past));
        long afterForward = System.nanoTime();
        for (int b = 0; b < batch; b++) {
            int real = tokens[b].length;
            if (real == 0) {
                continue;
            }
            KvCache cache = caches.get(b);
            for (int l = 0; l < layers; l++) {
                cache.append(l, step.newKeys(l, b).tokens(t - real, t), step.newValues(l, b).tokens(t - real, t));
            }
            lengths[b] += real;
        }
        long afterAppend = System.nanoTime();
        float[][][] out = new float[batch][][];
        for (int b = 0; b < batch; b++) {
            int real = tokens[b].length;
            int count = real == 0 ? 0 : allPositions ? real : 1;
            out[b] = new float[count][];
            for (int i = 0; i < count; i++) {
                float[] row = new float[vocab];
                step.logits(b, t - count + i, row);
                out[b][i] = row;
            }
        }
        materializeNanos += afterMaterialize - start;
        forwardNanos += afterForward - afterMaterialize;
        appendNanos += afterAppend - afterForward;
        return out;
    }

    /** Time spent so far filling past buffers from the caches (dequantization), in the runtime, and appending to caches. */
    public Timings timings() {
        return new Timings(materializeNanos, forwardNanos, appendNanos);
    }

    /** Bytes held by all caches now. */
    public long bytesHeld() {
        return caches.stream().mapToLong(KvCache::bytesHeld).sum();
    }

    public long bytesFp16() {
        return caches.stream().mapToLong(KvCache::bytesFp16).sum();
    }

    @Override
    public void close() {
        caches.forEach(KvCache::close);
    }

    /** Cumulative nanoseconds per phase of the loop. */
    public record Timings(long materializeNanos, long forwardNanos, long appendNanos) {
    }
}
