package dev.kvq.spi;

import dev.kvq.tensor.KvView;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The floats of a {@link KvView} laid out in a {@link CodeOrder}'s grouped sequence, so that a backend
 * reads every group as {@code groupSize} consecutive floats. A contiguous view in {@link CodeOrder#TOKEN_MAJOR}
 * order is used in place; anything else is copied once into scratch memory owned by this object.
 */
public final class GroupedInput implements AutoCloseable {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private final Arena arena;
    private final MemorySegment floats;
    private final long offset;
    private final long count;

    private GroupedInput(Arena arena, MemorySegment floats, long offset, long count) {
        this.arena = arena;
        this.floats = floats;
        this.offset = offset;
        this.count = count;
    }

    /** Lays {@code view} out in {@code order} (group size is needed only by {@link CodeOrder#STRIDED}). */
    public static GroupedInput of(KvView view, CodeOrder order, int groupSize) {
        long n = view.elements();
        if (order == CodeOrder.TOKEN_MAJOR && view.isContiguous()) {
            return new GroupedInput(null, view.segment(), view.offset(), n);
        }
        Arena arena = Arena.ofConfined();
        MemorySegment dst = arena.allocate(Math.max(1, n) * Float.BYTES, 64);
        int heads = view.heads();
        int tokens = view.tokens();
        int dim = view.headDim();
        MemorySegment src = view.segment();
        switch (order) {
            case TOKEN_MAJOR -> {
                long rowBytes = (long) tokens * dim * Float.BYTES;
                for (int h = 0; h < heads; h++) {
                    MemorySegment.copy(src, view.rowIndex(h, 0) * Float.BYTES, dst, h * rowBytes, rowBytes);
                }
            }
            case HEAD_CHANNEL_MAJOR -> {
                // each head's [T, D] rows become [D, T] lines
                for (int h = 0; h < heads; h++) {
                    PackedBlock.transpose(src, view.rowIndex(h, 0), tokens, dim, dst, (long) h * tokens * dim);
                }
            }
            case CHANNEL_MAJOR -> {
                long j = 0;
                for (int d = 0; d < dim; d++) {
                    for (int h = 0; h < heads; h++) {
                        long base = view.rowIndex(h, 0) + d;
                        for (int t = 0; t < tokens; t++) {
                            dst.setAtIndex(F32, j++, src.getAtIndex(F32, base + (long) t * dim));
                        }
                    }
                }
            }
            case STRIDED -> {
                long groups = n / groupSize;
                long perHead = (long) tokens * dim;
                for (long c = 0; c < groups; c++) {
                    for (int r = 0; r < groupSize; r++) {
                        long i = c + r * groups;
                        int h = (int) (i / perHead);
                        dst.setAtIndex(F32, c * groupSize + r, src.getAtIndex(F32, view.rowIndex(h, 0) + i % perHead));
                    }
                }
            }
        }
        return new GroupedInput(arena, dst, 0, n);
    }

    /** The memory holding the grouped floats. */
    public MemorySegment segment() {
        return floats;
    }

    /** Float index of the first grouped element in {@link #segment()}. */
    public long offset() {
        return offset;
    }

    public long count() {
        return count;
    }

    public float get(long j) {
        return floats.getAtIndex(F32, offset + j);
    }

    @Override
    public void close() {
        if (arena != null) {
            arena.close();
        }
    }
}
