package dev.kvq.cache.quantized;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;

/**
 * Memory for blocks that are replaced as a whole (a one-token block quantized before it is copied into place, the
 * {@code kvtuner} policy's re-quantized history): one segment handed out in zeroed slices from its start again after
 * every {@link #reset}. A request that does not fit is served from an overflow arena, and the next reset grows the
 * segment to what the last round asked for (at least doubling), so the segment is reallocated a logarithmic number
 * of times and a steady decode allocates nothing here.
 */
final class ReusableMemory implements SegmentAllocator, AutoCloseable {
    private static final long ALIGNMENT = 64;

    private Arena arena;
    private MemorySegment segment = MemorySegment.NULL;
    private long used;
    /** Bytes the current round asked for, alignment included, whether they fitted or not. */
    private long requested;
    private Arena overflow;

    /** Starts a new round: every slice handed out before becomes invalid. */
    void reset() {
        if (overflow != null) {
            long size = Math.max(requested, 2 * segment.byteSize());
            Arena next = Arena.ofShared();
            MemorySegment bigger = next.allocate(size, ALIGNMENT);
            close();
            arena = next;
            segment = bigger;
        }
        used = 0;
        requested = 0;
    }

    @Override
    public MemorySegment allocate(long byteSize, long byteAlignment) {
        requested = alignUp(requested, byteAlignment) + byteSize;
        long start = alignUp(used, byteAlignment);
        if (byteAlignment <= ALIGNMENT && start + byteSize <= segment.byteSize()) {
            used = start + byteSize;
            MemorySegment slice = segment.asSlice(start, byteSize);
            slice.fill((byte) 0);
            return slice;
        }
        if (overflow == null) {
            overflow = Arena.ofShared();
        }
        return overflow.allocate(byteSize, byteAlignment);
    }

    private static long alignUp(long offset, long alignment) {
        return (offset + alignment - 1) / alignment * alignment;
    }

    @Override
    public void close() {
        if (arena != null) {
            arena.close();
            arena = null;
        }
        if (overflow != null) {
            overflow.close();
            overflow = null;
        }
        segment = MemorySegment.NULL;
    }
}
