package dev.kvq.cache.quantized;

import dev.kvq.tensor.KvView;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/** Reusable float32 working memory for a key/value pair, grown on demand; contents live until the next use. */
final class Scratch implements AutoCloseable {
    private Arena arena;
    private MemorySegment keys = MemorySegment.NULL;
    private MemorySegment values = MemorySegment.NULL;

    /** Contiguous {@code [heads, tokens, headDim]} views for keys and values; earlier views become invalid. */
    KvView[] pair(int heads, int tokens, int headDim) {
        long bytes = Math.max(1, (long) heads * tokens * headDim) * Float.BYTES;
        if (bytes > keys.byteSize()) {
            long size = Math.max(bytes, keys.byteSize() * 2);
            Arena next = Arena.ofShared();
            keys = next.allocate(size, 64);
            values = next.allocate(size, 64);
            if (arena != null) {
                arena.close();
            }
            arena = next;
        }
        return new KvView[] {KvView.contiguous(keys, heads, tokens, headDim),
            KvView.contiguous(values, heads, tokens, headDim)};
    }

    long byteSize() {
        return keys.byteSize() + values.byteSize();
    }

    @Override
    public void close() {
        if (arena != null) {
            arena.close();
            arena = null;
            keys = MemorySegment.NULL;
            values = MemorySegment.NULL;
        }
    }
}
