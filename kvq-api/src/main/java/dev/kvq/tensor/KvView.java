package dev.kvq.tensor;

import dev.kvq.KvqException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * A float32 view of one sequence's K or V for one layer, logical shape {@code [heads, tokens, headDim]},
 * over memory it does not own (off-heap or a heap array). Element {@code (h, t, d)} lies at float index
 * {@code offset + h * headStride + t * headDim + d}: rows of one head are contiguous, heads may be
 * strided, which lets a view cover a token slice of a runtime's {@code [B, H, P+T, D]} output without
 * copying.
 *
 * @param segment the memory, native byte order
 * @param offset float index of element (0, 0, 0)
 * @param heads KV heads
 * @param tokens tokens
 * @param headDim floats per token per head
 * @param headStride floats between the starts of consecutive heads
 */
public record KvView(MemorySegment segment, long offset, int heads, int tokens, int headDim, long headStride) {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED;
    private static final int EXPONENT = 0x7F800000;
    private static final int EXPONENT_ONE = 0x00800000;
    /** Float bits of the chunk {@link #firstNonFinite()} checks, per thread (it runs for every appended token). */
    private static final ThreadLocal<int[]> FINITE_SCRATCH = ThreadLocal.withInitial(() -> new int[1024]);

    public KvView {
        if (heads < 0 || tokens < 0 || headDim < 1 || offset < 0 || headStride < (long) tokens * headDim) {
            throw new KvqException(dev.kvq.ErrorCode.ILLEGAL_ARGUMENT, "invalid view: heads=" + heads + " tokens="
                    + tokens + " headDim=" + headDim + " offset=" + offset + " headStride=" + headStride);
        }
        if (heads > 0 && tokens > 0) {
            long lastFloat = offset + (heads - 1) * headStride + (long) tokens * headDim;
            if (lastFloat * Float.BYTES > segment.byteSize()) {
                throw new KvqException(dev.kvq.ErrorCode.ILLEGAL_ARGUMENT, "view of " + heads + "x" + tokens + "x"
                        + headDim + " floats does not fit a segment of " + segment.byteSize() + " bytes");
            }
        }
    }

    /** A contiguous {@code [heads, tokens, headDim]} view. */
    public static KvView contiguous(MemorySegment segment, int heads, int tokens, int headDim) {
        return new KvView(segment, 0, heads, tokens, headDim, (long) tokens * headDim);
    }

    /** Sequence {@code b} of a dense {@code [batch, heads, tokens, headDim]} tensor, as runtimes lay out K/V. */
    public static KvView sequence(MemorySegment batchTensor, int b, int heads, int tokens, int headDim) {
        return new KvView(batchTensor, (long) b * heads * tokens * headDim, heads, tokens, headDim,
                (long) tokens * headDim);
    }

    /** A contiguous view over a heap array (tests, small inputs). */
    public static KvView of(float[] data, int heads, int tokens, int headDim) {
        return contiguous(MemorySegment.ofArray(data), heads, tokens, headDim);
    }

    /** Allocates a zeroed contiguous view in {@code arena}. */
    public static KvView allocate(Arena arena, int heads, int tokens, int headDim) {
        long floats = (long) heads * tokens * headDim;
        return contiguous(arena.allocate(Math.max(1, floats) * Float.BYTES, 64), heads, tokens, headDim);
    }

    public long elements() {
        return (long) heads * tokens * headDim;
    }

    /** True when the view is one dense block of {@code elements()} floats. */
    public boolean isContiguous() {
        return heads <= 1 || headStride == (long) tokens * headDim;
    }

    /** Float index of the first element of row {@code (h, t)}. */
    public long rowIndex(int h, int t) {
        return offset + h * headStride + (long) t * headDim;
    }

    public float get(int h, int t, int d) {
        return segment.getAtIndex(F32, rowIndex(h, t) + d);
    }

    public void set(int h, int t, int d, float value) {
        segment.setAtIndex(F32, rowIndex(h, t) + d, value);
    }

    /** The tokens {@code [from, to)} of every head. */
    public KvView tokens(int from, int to) {
        if (from < 0 || to > tokens || from > to) {
            throw new KvqException(dev.kvq.ErrorCode.ILLEGAL_ARGUMENT, "token range [" + from + ", " + to
                    + ") outside [0, " + tokens + ")");
        }
        return new KvView(segment, offset + (long) from * headDim, heads, to - from, headDim, headStride);
    }

    /** Head {@code h} alone, as a one-head view. */
    public KvView head(int h) {
        if (h < 0 || h >= heads) {
            throw new KvqException(dev.kvq.ErrorCode.ILLEGAL_ARGUMENT, "head " + h + " outside [0, " + heads + ")");
        }
        return new KvView(segment, offset + h * headStride, 1, tokens, headDim, (long) tokens * headDim);
    }

    /** Heads {@code [from, to)}, all tokens. */
    public KvView heads(int from, int to) {
        if (from < 0 || to > heads || from > to) {
            throw new KvqException(dev.kvq.ErrorCode.ILLEGAL_ARGUMENT, "head range [" + from + ", " + to
                    + ") outside [0, " + heads + ")");
        }
        return new KvView(segment, offset + from * headStride, to - from, tokens, headDim,
                to - from <= 1 ? (long) tokens * headDim : headStride);
    }

    /** Sets every element to zero. */
    public void zero() {
        long rowBytes = (long) tokens * headDim * Float.BYTES;
        for (int h = 0; h < heads; h++) {
            segment.asSlice(rowIndex(h, 0) * Float.BYTES, rowBytes).fill((byte) 0);
        }
    }

    /** Copies this view into {@code dst}, which must have the same shape. */
    public void copyTo(KvView dst) {
        checkSameShape(dst);
        long rowBytes = (long) tokens * headDim * Float.BYTES;
        for (int h = 0; h < heads; h++) {
            MemorySegment.copy(segment, rowIndex(h, 0) * Float.BYTES, dst.segment, dst.rowIndex(h, 0) * Float.BYTES,
                    rowBytes);
        }
    }

    /** The elements in logical order, as a new array (tests, small tensors). */
    public float[] toArray() {
        float[] out = new float[Math.toIntExact(elements())];
        copyTo(KvView.of(out, heads, tokens, headDim));
        return out;
    }

    /**
     * Index of the first non-finite element in logical order, or -1 when all are finite. Used to reject
     * NaN/inf K/V before they are packed.
     */
    public long firstNonFinite() {
        // a contiguous view is one run of floats (a decode step's token: all heads in one copy, not one per head)
        int runs = isContiguous() ? Math.min(heads, 1) : heads;
        long n = isContiguous() ? elements() : (long) tokens * headDim;
        int[] bits = FINITE_SCRATCH.get();
        for (int h = 0; h < runs; h++) {
            long base = rowIndex(h, 0) * Float.BYTES;
            for (long at = 0; at < n; at += bits.length) {
                int len = (int) Math.min(bits.length, n - at);
                // bulk copy, then a loop over an array that the JIT vectorizes (element reads check the segment each)
                MemorySegment.copy(segment, I32, base + at * Float.BYTES, bits, 0, len);
                int any = 0;
                for (int i = 0; i < len; i++) {
                    // the exponent is all ones (infinite or NaN) exactly when adding one to it carries into the sign
                    any |= (bits[i] & EXPONENT) + EXPONENT_ONE;
                }
                if (any < 0) {
                    for (int i = 0; i < len; i++) {
                        if ((bits[i] & EXPONENT) == EXPONENT) {
                            return h * n + at + i;
                        }
                    }
                }
            }
        }
        return -1;
    }

    public void checkSameShape(KvView other) {
        if (other.heads != heads || other.tokens != tokens || other.headDim != headDim) {
            throw new KvqException(dev.kvq.ErrorCode.ILLEGAL_ARGUMENT, "shape [" + other.heads + ", " + other.tokens
                    + ", " + other.headDim + "] does not match [" + heads + ", " + tokens + ", " + headDim + "]");
        }
    }
}
