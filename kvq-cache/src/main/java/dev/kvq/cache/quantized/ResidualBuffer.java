package dev.kvq.cache.quantized;

import dev.kvq.tensor.KvView;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Full-precision tokens of one head group, {@code [heads, capacity, headDim]} float32, head-major so each
 * head's tokens are contiguous. Owns its memory; grows by reallocation (doubling) and frees the old memory,
 * so {@link #byteSize()} is exactly what it holds.
 */
final class ResidualBuffer implements AutoCloseable {
    private final int heads;
    private final int headDim;
    private Arena arena;
    private MemorySegment memory = MemorySegment.NULL;
    private int capacity;
    private int tokens;

    ResidualBuffer(int heads, int headDim, int initialCapacity) {
        this.heads = heads;
        this.headDim = headDim;
        ensureCapacity(initialCapacity);
    }

    int tokens() {
        return tokens;
    }

    long byteSize() {
        return memory.byteSize();
    }

    KvView view() {
        return new KvView(memory, 0, heads, tokens, headDim, (long) capacity * headDim);
    }

    /** Grows to hold {@code tokens} tokens now, if it holds less room. */
    void reserve(int tokens) {
        if (tokens > capacity) {
            ensureCapacity(tokens);
        }
    }

    /** Appends every token of {@code src}. */
    void append(KvView src) {
        ensureCapacity(tokens + src.tokens());
        src.copyTo(new KvView(memory, (long) tokens * headDim, heads, src.tokens(), headDim, (long) capacity * headDim));
        tokens += src.tokens();
    }

    /** Drops the first {@code n} tokens, moving the rest to the front. */
    void dropFirst(int n) {
        int rest = tokens - n;
        long headBytes = (long) capacity * headDim * Float.BYTES;
        for (int h = 0; h < heads; h++) {
            MemorySegment.copy(memory, h * headBytes + (long) n * headDim * Float.BYTES, memory, h * headBytes,
                    (long) rest * headDim * Float.BYTES);
        }
        tokens = rest;
    }

    void clear() {
        tokens = 0;
    }

    private void ensureCapacity(int needed) {
        if (needed <= capacity && arena != null) {
            return;
        }
        int newCapacity = Math.max(Math.max(needed, capacity * 2), 1);
        Arena newArena = Arena.ofShared();
        MemorySegment bigger = newArena.allocate((long) heads * newCapacity * headDim * Float.BYTES, 64);
        if (tokens > 0) {
            long oldHead = (long) capacity * headDim * Float.BYTES;
            long newHead = (long) newCapacity * headDim * Float.BYTES;
            for (int h = 0; h < heads; h++) {
                MemorySegment.copy(memory, h * oldHead, bigger, h * newHead, (long) tokens * headDim * Float.BYTES);
            }
        }
        if (arena != null) {
            arena.close();
        }
        arena = newArena;
        memory = bigger;
        capacity = newCapacity;
    }

    @Override
    public void close() {
        if (arena != null) {
            arena.close();
            arena = null;
            memory = MemorySegment.NULL;
            capacity = 0;
            tokens = 0;
        }
    }
}
