package dev.kvq.spi;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/** Per-thread working memory of the hot paths, grown on demand and reused, so decoding allocates nothing. */
final class Scratch {
    private static final ThreadLocal<Scratch> LOCAL = ThreadLocal.withInitial(Scratch::new);

    private MemorySegment floats = MemorySegment.NULL;
    private int[] ints = new int[0];
    private final float[][] heap = {new float[0], new float[0]};

    private Scratch() {
    }

    /** Native memory for at least {@code count} floats; valid until this thread's next call. */
    static MemorySegment floats(long count) {
        Scratch s = LOCAL.get();
        long bytes = count * Float.BYTES;
        if (s.floats.byteSize() < bytes) {
            // GC-managed, so a thread's scratch is freed with the thread; sizes only grow
            s.floats = Arena.ofAuto().allocate(Math.max(bytes, s.floats.byteSize() * 2), 64);
        }
        return s.floats;
    }

    /** Heap float array {@code slot} (0 or 1) of at least {@code count} floats. */
    static float[] heapFloats(int slot, int count) {
        Scratch s = LOCAL.get();
        if (s.heap[slot].length < count) {
            s.heap[slot] = new float[Math.max(count, s.heap[slot].length * 2)];
        }
        return s.heap[slot];
    }

    static int[] ints(int count) {
        Scratch s = LOCAL.get();
        if (s.ints.length < count) {
            s.ints = new int[count];
        }
        return s.ints;
    }
}
