package dev.kvq.generate.spi;

import dev.kvq.tensor.KvView;

/** The result of one forward step. Views are valid until the next forward. */
public interface Step {
    /** Copies the logits of sequence {@code b} at new position {@code t} into {@code out} (vocabulary length). */
    void logits(int b, int t, float[] out);

    /** The new tokens' keys of {@code layer} for sequence {@code b}: {@code [kvHeads, tokens, headDim]}. */
    KvView newKeys(int layer, int b);

    KvView newValues(int layer, int b);

    /**
     * Whether {@link #newKeys} and {@link #newValues} may be called from several threads at once for different
     * sequences, each view staying valid until its thread asks for the same layer and kind again. The session then
     * hands long feeds (prompts) to the caches of their sequences in parallel: quantizing a batch of prompts on the
     * host is the largest part of admitting them.
     */
    default boolean concurrentViews() {
        return false;
    }
}
