package dev.kvq.generate.spi;

import dev.kvq.tensor.KvView;
import java.lang.foreign.MemorySegment;

/**
 * Past buffers laid out as runtimes take them: per layer one float32 segment of shape
 * {@code [batch, kvHeads, length, headDim]}, each sequence's slice a {@link KvView}.
 */
public final class DensePast implements PastBuffers {
    private final MemorySegment[] keys;
    private final MemorySegment[] values;
    private final int batch;
    private final int length;
    private final int heads;
    private final int headDim;

    /** Views over {@code keys[layer]} and {@code values[layer]}; the arrays are read, not copied. */
    public DensePast(MemorySegment[] keys, MemorySegment[] values, int batch, int length, int heads, int headDim) {
        this.keys = keys;
        this.values = values;
        this.batch = batch;
        this.length = length;
        this.heads = heads;
        this.headDim = headDim;
    }

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
        return KvView.sequence(keys[layer], sequence, heads, length, headDim);
    }

    @Override
    public KvView values(int layer, int sequence) {
        return KvView.sequence(values[layer], sequence, heads, length, headDim);
    }
}
