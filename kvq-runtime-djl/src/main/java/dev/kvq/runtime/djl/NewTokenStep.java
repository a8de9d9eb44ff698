package dev.kvq.runtime.djl;

import dev.kvq.generate.spi.Step;
import dev.kvq.tensor.KvView;
import java.lang.foreign.MemorySegment;

/**
 * The outputs of a step, copied out of PyTorch: the logits {@code [batch, tokens, vocab]} and the new tokens' K/V,
 * tensor {@code 2l} (keys of layer {@code l}) and {@code 2l + 1} (values) each {@code [batch, heads, tokens, dim]} at
 * {@code offsets[i]} of {@code kv[i]}.
 */
record NewTokenStep(float[] logits, float[][] kv, long[] offsets, int tokens, int heads, int dim, int vocab)
        implements Step {
    @Override
    public void logits(int b, int t, float[] out) {
        System.arraycopy(logits, (b * tokens + t) * vocab, out, 0, vocab);
    }

    @Override
    public KvView newKeys(int layer, int b) {
        return view(2 * layer, b);
    }

    @Override
    public KvView newValues(int layer, int b) {
        return view(2 * layer + 1, b);
    }

    /** The views read arrays that no one writes once the step is made. */
    @Override
    public boolean concurrentViews() {
        return true;
    }

    private KvView view(int tensor, int b) {
        long perSequence = (long) heads * tokens * dim;
        return new KvView(MemorySegment.ofArray(kv[tensor]), offsets[tensor] + b * perSequence, heads, tokens, dim,
                (long) tokens * dim);
    }
}
