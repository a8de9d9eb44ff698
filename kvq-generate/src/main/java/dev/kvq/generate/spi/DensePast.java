package dev.kvq.generate.spi;

import dev.kvq.tensor.KvView;
import java.lang.foreign.MemorySegment;

/**
 * Past buffers laid out as runtimes take them: per layer one float32 segment of shape
 * {@code [batch, heads, length, headDim]}, each sequence's slice a {@link KvView}. The arrays are read, not copied.
 */
public record DensePast(MemorySegment[] keySegments, MemorySegment[] valueSegments, int batch, int length, int heads,
                        int headDim) implements PastBuffers {
    @Override
    public KvView keys(int layer, int sequence) {
        return KvView.sequence(keySegments[layer], sequence, heads, length, headDim);
    }

    @Override
    public KvView values(int layer, int sequence) {
        return KvView.sequence(valueSegments[layer], sequence, heads, length, headDim);
    }
}
