package dev.kvq.generate;

import dev.kvq.generate.model.ModelConfig;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.spi.PastBuffers;
import dev.kvq.generate.spi.Step;
import dev.kvq.generate.spi.StepInput;
import dev.kvq.tensor.KvView;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.List;

/**
 * A decoder whose next token is always the last input token plus one (modulo the vocabulary): generation from it is
 * known in advance, so the loop around it can be checked exactly. One layer, one KV head of 4 channels; its K/V hold
 * the token id, so a cache's contents can be checked too. Allocates nothing per step itself.
 */
final class CountingDecoder implements Decoder, Step {
    static final int DIM = 4;
    private final ModelConfig config;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment pastKeys;
    private final MemorySegment pastValues;
    private final MemorySegment fresh;
    private final Past past = new Past();
    private final int maxTokens;
    private long[] lastIds = new long[0];
    private int batch;
    private int tokens;
    /** What {@link #concurrentViews()} answers (its views are read-only, so both are true to the contract). */
    boolean concurrentViews;

    CountingDecoder(int vocab, List<Integer> eos, int maxTokens) {
        this.config = new ModelConfig("counting", 1, 1, 1, DIM, DIM, vocab, 0, eos, null);
        this.maxTokens = maxTokens;
        long bytes = (long) maxTokens * DIM * Float.BYTES * 8;
        pastKeys = arena.allocate(bytes);
        pastValues = arena.allocate(bytes);
        fresh = arena.allocate(bytes);
    }

    @Override
    public ModelConfig config() {
        return config;
    }

    @Override
    public String device() {
        return "cpu";
    }

    @Override
    public PastBuffers past(int batch, int pastLength) {
        if (batch * pastLength > 8 * maxTokens) {
            throw new IllegalArgumentException("more tokens than the stand-in holds");
        }
        past.batch = batch;
        past.length = pastLength;
        return past;
    }

    @Override
    public Step forward(StepInput input) {
        batch = input.batch();
        tokens = input.tokens();
        if (lastIds.length < batch * tokens) {
            lastIds = new long[batch * tokens];
        }
        System.arraycopy(input.inputIds(), 0, lastIds, 0, batch * tokens);
        for (int i = 0; i < batch * tokens; i++) {
            for (int d = 0; d < DIM; d++) {
                fresh.setAtIndex(java.lang.foreign.ValueLayout.JAVA_FLOAT, (long) i * DIM + d, lastIds[i]);
            }
        }
        return this;
    }

    @Override
    public void logits(int b, int t, float[] out) {
        java.util.Arrays.fill(out, 0f);
        out[(int) ((lastIds[b * tokens + t] + 1) % out.length)] = 10f;
    }

    @Override
    public KvView newKeys(int layer, int b) {
        return KvView.sequence(fresh, b, 1, tokens, DIM);
    }

    @Override
    public KvView newValues(int layer, int b) {
        return KvView.sequence(fresh, b, 1, tokens, DIM);
    }

    @Override
    public boolean concurrentViews() {
        return concurrentViews;
    }

    @Override
    public void close() {
        arena.close();
    }

    private final class Past implements PastBuffers {
        int batch;
        int length;

        @Override
        public int batch() {
            return batch;
        }

        @Override
        public int length() {
            return length;
        }

        @Override
        public KvView keys(int layer, int sequence) {
            return KvView.sequence(pastKeys, sequence, 1, length, DIM);
        }

        @Override
        public KvView values(int layer, int sequence) {
            return KvView.sequence(pastValues, sequence, 1, length, DIM);
        }
    }
}
