package dev.kvq.spi;

import dev.kvq.KvqException;
import dev.kvq.ErrorCode;
import dev.kvq.tensor.KvView;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * kvq's standard packed form of one quantized block of K or V: bit-packed unsigned codes
 * ({@link BitPacking}), in a {@link CodeOrder} where each group is a run of {@code groupSize} codes, and
 * one float32 scale and one float32 zero (or min) per group, interpreted by an {@link AffineForm}.
 *
 * <p>Every backend produces this form and every runtime can dequantize it with {@link #dequantize(KvView)},
 * so a third-party backend runs everywhere. Memory comes from the allocator given at creation; the block
 * does not free it. {@link #byteSize()} is exactly the bytes of codes and parameters it holds.
 */
public final class PackedBlock {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;
    /** Float lanes of the SIMD decode ({@link PackedBlockSimd}): 8 or 16, else 0 and the scalar path only. */
    private static final int SIMD_LANES = VectorSupport.floatLanes() == 8 || VectorSupport.floatLanes() == 16
            ? VectorSupport.floatLanes() : 0;

    private final int bits;
    private final CodeOrder order;
    private final AffineForm form;
    private final int codeOffset;
    private final int heads;
    private final int tokens;
    private final int headDim;
    private final int groupSize;
    private final MemorySegment codes;
    private final MemorySegment scales;
    private final MemorySegment zeros;

    private PackedBlock(int bits, CodeOrder order, AffineForm form, int codeOffset, int heads, int tokens, int headDim,
                        int groupSize, MemorySegment codes, MemorySegment scales, MemorySegment zeros) {
        this.bits = bits;
        this.order = order;
        this.form = form;
        this.codeOffset = codeOffset;
        this.heads = heads;
        this.tokens = tokens;
        this.headDim = headDim;
        this.groupSize = groupSize;
        this.codes = codes;
        this.scales = scales;
        this.zeros = zeros;
    }

    /**
     * Allocates an empty block (codes zero) for a backend to fill.
     *
     * @param codeOffset added to every unsigned code before the zero point ({@link AffineForm#ZERO_POINT} only;
     *     -2^(bits-1) turns codes into the signed range of KVTuner's vanilla quantizer)
     */
    public static PackedBlock allocate(SegmentAllocator allocator, int bits, CodeOrder order, AffineForm form,
                                       int codeOffset, int heads, int tokens, int headDim, int groupSize) {
        if (bits < 1 || bits > 8) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "bits must be 1..8, was " + bits);
        }
        long n = (long) heads * tokens * headDim;
        if (groupSize < 1 || n % groupSize != 0) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "group size " + groupSize + " does not divide the "
                    + n + " elements of a " + heads + "x" + tokens + "x" + headDim + " block");
        }
        if (form == AffineForm.SCALE_MIN && codeOffset != 0) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "SCALE_MIN blocks have no code offset");
        }
        long groups = n / groupSize;
        MemorySegment codes = allocator.allocate(Math.max(1, BitPacking.packedBytes(n, bits)), 8);
        MemorySegment scales = allocator.allocate(Math.max(1, groups) * Float.BYTES, 8);
        MemorySegment zeros = allocator.allocate(Math.max(1, groups) * Float.BYTES, 8);
        codes.fill((byte) 0);
        return new PackedBlock(bits, order, form, codeOffset, heads, tokens, headDim, groupSize,
                codes.asSlice(0, BitPacking.packedBytes(n, bits)), scales.asSlice(0, groups * Float.BYTES),
                zeros.asSlice(0, groups * Float.BYTES));
    }

    public int bits() { return bits; }
    public CodeOrder order() { return order; }
    public AffineForm form() { return form; }
    public int codeOffset() { return codeOffset; }
    public int heads() { return heads; }
    public int tokens() { return tokens; }
    public int headDim() { return headDim; }
    public int groupSize() { return groupSize; }

    public long elements() {
        return (long) heads * tokens * headDim;
    }

    public long groups() {
        return elements() / groupSize;
    }

    /** The packed codes. */
    public MemorySegment codes() {
        return codes;
    }

    /** One float32 scale per group. */
    public MemorySegment scales() {
        return scales;
    }

    /** One float32 zero point ({@link AffineForm#ZERO_POINT}) or min ({@link AffineForm#SCALE_MIN}) per group. */
    public MemorySegment zeros() {
        return zeros;
    }

    public float scale(long group) {
        return scales.getAtIndex(F32, group);
    }

    public float zero(long group) {
        return zeros.getAtIndex(F32, group);
    }

    public void setGroup(long group, float scale, float zero) {
        scales.setAtIndex(F32, group, scale);
        zeros.setAtIndex(F32, group, zero);
    }

    /** The unsigned code at position {@code j} of the block's code order. */
    public int code(long j) {
        return BitPacking.get(codes, j, bits);
    }

    /** Bytes held: packed codes plus the two float32 parameters of every group. */
    public long byteSize() {
        return codes.byteSize() + scales.byteSize() + zeros.byteSize();
    }

    /** Bytes held when scales and zeros are stored in float16 ({@code halfParams}) or float32. */
    public long byteSize(boolean halfParams) {
        return halfParams ? codes.byteSize() + groups() * 2L * Short.BYTES : byteSize();
    }

    /**
     * Rounds every scale and zero to the nearest float16 value, in place: the block then decodes exactly as one whose
     * parameters are stored in float16 (as placement device stores them).
     */
    public void roundParamsToHalf() {
        roundGroupsToHalf(0, groups());
    }

    /**
     * {@link #roundParamsToHalf} for the groups of token {@code token} alone: a {@link CodeOrder#TOKEN_MAJOR} block
     * whose groups lie within a row.
     */
    public void roundTokenParamsToHalf(int token) {
        if (order != CodeOrder.TOKEN_MAJOR || headDim % groupSize != 0 || token < 0 || token >= tokens) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "cannot round the parameters of token " + token
                    + " of " + this + " alone");
        }
        int groupsPerRow = headDim / groupSize;
        for (int h = 0; h < heads; h++) {
            long first = ((long) h * tokens + token) * groupsPerRow;
            roundGroupsToHalf(first, first + groupsPerRow);
        }
    }

    private void roundGroupsToHalf(long from, long to) {
        for (long g = from; g < to; g++) {
            scales.setAtIndex(F32, g, Float.float16ToFloat(Float.floatToFloat16(scales.getAtIndex(F32, g))));
            zeros.setAtIndex(F32, g, Float.float16ToFloat(Float.floatToFloat16(zeros.getAtIndex(F32, g))));
        }
    }

    /** The value of code position {@code j} (slow path, for tests and tools). */
    public float value(long j) {
        long g = j / groupSize;
        return decode(code(j), scale(g), zero(g));
    }

    private float decode(int u, float scale, float zero) {
        return form == AffineForm.ZERO_POINT ? ((float) (u + codeOffset) + zero) * scale : u * scale + zero;
    }

    /**
     * Whether whole token rows of this block can be copied into another block of the same kind
     * ({@link #copyToken}): token-major order, groups that lie inside one token's row, and rows that start on a byte
     * (dense widths) or on a 16-byte chunk (planar widths).
     */
    public boolean rowCopyable() {
        if (order != CodeOrder.TOKEN_MAJOR || headDim % groupSize != 0) {
            return false;
        }
        return BitPacking.planar(bits) ? headDim % BitPacking.chunkCodes(bits) == 0 : (long) headDim * bits % 8 == 0;
    }

    /**
     * Copies token {@code from} of every head of {@code src} into token {@code to} of this block: codes, scales and
     * zeros, unchanged. Both blocks must be {@link #rowCopyable} and alike but for their token counts.
     */
    public void copyToken(PackedBlock src, int from, int to) {
        if (!rowCopyable() || !src.rowCopyable() || src.bits != bits || src.form != form || src.codeOffset != codeOffset
                || src.heads != heads || src.headDim != headDim || src.groupSize != groupSize
                || from < 0 || from >= src.tokens || to < 0 || to >= tokens) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "cannot copy token " + from + " of " + src + " into token "
                    + to + " of " + this);
        }
        long rowBytes = (long) headDim * bits / 8;
        int groupsPerRow = headDim / groupSize;
        for (int h = 0; h < heads; h++) {
            long srcRow = (long) h * src.tokens + from;
            long dstRow = (long) h * tokens + to;
            MemorySegment.copy(src.codes, srcRow * rowBytes, codes, dstRow * rowBytes, rowBytes);
            MemorySegment.copy(src.scales, srcRow * groupsPerRow * Float.BYTES, scales,
                    dstRow * groupsPerRow * Float.BYTES, (long) groupsPerRow * Float.BYTES);
            MemorySegment.copy(src.zeros, srcRow * groupsPerRow * Float.BYTES, zeros,
                    dstRow * groupsPerRow * Float.BYTES, (long) groupsPerRow * Float.BYTES);
        }
    }

    /**
     * Writes the first {@code count} tokens of every head, dequantized, into {@code dst} ({@code [heads, count,
     * headDim]}): a block filled token by token. Token-major blocks only.
     */
    public void dequantizeTokens(KvView dst, int count) {
        if (order != CodeOrder.TOKEN_MAJOR || count < 0 || count > tokens || dst.heads() != heads
                || dst.tokens() != count || dst.headDim() != headDim) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "cannot dequantize " + count + " tokens of " + this
                    + " into a " + dst.heads() + "x" + dst.tokens() + "x" + dst.headDim() + " view");
        }
        decodeTokenRows(dst, count);
    }

    /** Token-major order: each head's first {@code count} rows are one run of codes, decoded straight into place. */
    private void decodeTokenRows(KvView dst, int count) {
        long perHead = (long) tokens * headDim;
        for (int h = 0; h < heads && count > 0; h++) {
            decode(h * perHead, (long) count * headDim, dst.segment(), dst.rowIndex(h, 0));
        }
    }

    /** Writes the dequantized block into {@code dst}, which must have the block's shape. */
    public void dequantize(KvView dst) {
        if (dst.heads() != heads || dst.tokens() != tokens || dst.headDim() != headDim) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "cannot dequantize a " + heads + "x" + tokens + "x"
                    + headDim + " block into a " + dst.heads() + "x" + dst.tokens() + "x" + dst.headDim() + " view");
        }
        if (elements() == 0) {
            return;
        }
        long perHead = (long) tokens * headDim;
        switch (order) {
            case TOKEN_MAJOR -> decodeTokenRows(dst, tokens);
            case HEAD_CHANNEL_MAJOR -> {
                MemorySegment scratch = Scratch.floats(perHead);
                for (int h = 0; h < heads; h++) {
                    decode(h * perHead, perHead, scratch, 0);
                    transpose(scratch, 0, headDim, tokens, dst.segment(), dst.rowIndex(h, 0));
                }
            }
            case CHANNEL_MAJOR -> {
                long rows = (long) heads * tokens;
                MemorySegment scratch = Scratch.floats(elements());
                decode(0, elements(), scratch, 0);
                for (int h = 0; h < heads; h++) {
                    // channel d of head h: scratch[d * rows + h * tokens + t]
                    for (int d = 0; d < headDim; d++) {
                        long from = d * rows + (long) h * tokens;
                        long to = dst.rowIndex(h, 0) + d;
                        for (int t = 0; t < tokens; t++) {
                            dst.segment().setAtIndex(F32, to + (long) t * headDim, scratch.getAtIndex(F32, from + t));
                        }
                    }
                }
            }
            case STRIDED -> {
                MemorySegment scratch = Scratch.floats(elements());
                decode(0, elements(), scratch, 0);
                long groups = groups();
                for (long c = 0; c < groups; c++) {
                    for (int r = 0; r < groupSize; r++) {
                        long i = c + r * groups;
                        int h = (int) (i / perHead);
                        dst.segment().setAtIndex(F32, dst.rowIndex(h, 0) + i % perHead,
                                scratch.getAtIndex(F32, c * groupSize + r));
                    }
                }
            }
        }
    }

    /**
     * Decodes codes {@code [j, j+n)} (grouped order) into {@code n} consecutive floats of {@code dst} starting at float
     * index {@code at}. Takes the vector path when the run is made of whole 16-byte chunks and each 16-code plane
     * segment lies in one group of a power-of-two number of segments; otherwise the scalar reference path, which
     * computes the same values.
     */
    private void decode(long j, long n, MemorySegment dst, long at) {
        int chunkCodes = bits == 8 ? 16 : BitPacking.planar(bits) ? 16 * (8 / bits) : 0;
        boolean fast = SIMD_LANES > 0 && chunkCodes > 0 && j % chunkCodes == 0 && n % chunkCodes == 0
                && groupSize % 16 == 0 && Integer.bitCount(groupSize / 16) == 1;
        if (fast) {
            decodeVector(j / chunkCodes, n / chunkCodes, dst, at);
        } else {
            decodeScalar(j, n, dst, at);
        }
    }

    private void decodeScalar(long j, long n, MemorySegment dst, long at) {
        int[] buf = Scratch.ints(256);
        for (long done = 0; done < n; ) {
            int len = (int) Math.min(256, n - done);
            BitPacking.unpack(codes, j + done, len, bits, buf, 0);
            for (int i = 0; i < len; i++) {
                long g = (j + done + i) / groupSize;
                dst.setAtIndex(F32, at + done + i, decode(buf[i], scale(g), zero(g)));
            }
            done += len;
        }
    }

    /**
     * Decodes {@code chunks} 16-byte chunks from chunk {@code first}. A chunk holds {@code planes} segments of 16 codes
     * (byte k holds code k of each plane at shift {@code plane * bits}; an 8-bit chunk is one plane of bytes). The
     * innermost loop walks chunks of one plane with every address linear in its counter and no data-dependent branch:
     * C2 compiles such loops once, where conditional counters made it speculate, trap and recompile for seconds.
     */
    private void decodeVector(long first, long chunks, MemorySegment dst, long at) {
        int planes = bits == 8 ? 1 : 8 / bits;
        int segmentsPerGroup = groupSize / 16;
        if (segmentsPerGroup <= planes) {
            // several groups per chunk: group = chunk * (planes / segmentsPerGroup) + plane / segmentsPerGroup.
            // Their scales and zeros are copied to arrays once: indexing the segments with a strided counter made
            // C2 trap and recompile the loop for seconds.
            int stride = planes / segmentsPerGroup;
            long firstGroup = first * stride;
            int count = Math.toIntExact(chunks * stride);
            float[] s = Scratch.heapFloats(0, count);
            float[] z = Scratch.heapFloats(1, count);
            MemorySegment.copy(scales, F32, firstGroup * Float.BYTES, s, 0, count);
            MemorySegment.copy(zeros, F32, firstGroup * Float.BYTES, z, 0, count);
            for (int p = 0; p < planes; p++) {
                decodePlaneStrided(p, planes, first, (int) chunks, p / segmentsPerGroup, stride, s, z, dst, at);
            }
        } else {
            // several chunks per group: one scale and zero for each run of chunksPerGroup chunks
            int chunksPerGroup = segmentsPerGroup / planes;
            long end = first + chunks;
            for (long g = first / chunksPerGroup; g * chunksPerGroup < end; g++) {
                long from = Math.max(first, g * chunksPerGroup);
                long to = Math.min(end, (g + 1) * chunksPerGroup);
                for (int p = 0; p < planes; p++) {
                    decodePlane(p, planes, first, (int) (from - first), (int) (to - first), g, dst, at);
                }
            }
        }
    }

    /** Plane {@code p} of chunks {@code [first + c0, first + c1)}, all in group {@code group}. */
    private void decodePlane(int p, int planes, long first, int c0, int c1, long group, MemorySegment dst, long at) {
        int shift = p * bits;
        int mask = (1 << bits) - 1;
        boolean zeroPoint = form == AffineForm.ZERO_POINT;
        ByteOrder order = ByteOrder.nativeOrder();
        float scale = scales.getAtIndex(F32, group);
        float zero = zeros.getAtIndex(F32, group);
        for (int c = c0; c < c1; c++) {
            decodeChunk(first + c, (at + ((long) c * planes + p) * 16) * Float.BYTES, shift, mask, scale, zero,
                    zeroPoint, dst, order);
        }
    }

    /** Plane {@code p} of chunks {@code [first, first + chunks)}, chunk {@code first + c} in group {@code g0 + c * stride}
     * of {@code s} and {@code z}. */
    private void decodePlaneStrided(int p, int planes, long first, int chunks, int g0, int stride, float[] s, float[] z,
                                    MemorySegment dst, long at) {
        int shift = p * bits;
        int mask = (1 << bits) - 1;
        boolean zeroPoint = form == AffineForm.ZERO_POINT;
        ByteOrder order = ByteOrder.nativeOrder();
        for (int c = 0; c < chunks; c++) {
            float scale = s[g0 + c * stride];
            float zero = z[g0 + c * stride];
            decodeChunk(first + c, (at + ((long) c * planes + p) * 16) * Float.BYTES, shift, mask, scale, zero,
                    zeroPoint, dst, order);
        }
    }

    /** One plane of chunk {@code chunk}: its 16 codes into floats at byte {@code out} of {@code dst}. */
    private void decodeChunk(long chunk, long out, int shift, int mask, float scale, float zero, boolean zeroPoint,
                             MemorySegment dst, ByteOrder order) {
        long byteAt = chunk * BitPacking.CHUNK_BYTES;
        PackedBlockSimd.decodeLanes(codes, byteAt, shift, mask, codeOffset, scale, zero, zeroPoint, dst, out, order);
        if (SIMD_LANES == 8) {
            PackedBlockSimd.decodeLanes(codes, byteAt + 8, shift, mask, codeOffset, scale, zero, zeroPoint, dst,
                    out + 8 * Float.BYTES, order);
        }
    }

    /**
     * {@code dst[c][r] = src[r][c]} for a {@code rows x cols} float matrix at {@code srcAt}; destination rows are
     * contiguous {@code rows}-float rows at {@code dstAt}. Works on heap copies: array code and bulk copies beat
     * element-wise segment access by a wide margin.
     */
    static void transpose(MemorySegment src, long srcAt, int rows, int cols, MemorySegment dst, long dstAt) {
        float[] in = Scratch.heapFloats(0, rows * cols);
        float[] out = Scratch.heapFloats(1, rows * cols);
        MemorySegment.copy(src, F32, srcAt * Float.BYTES, in, 0, rows * cols);
        // 16x16 tiles: a power-of-two row stride would otherwise map a column walk onto a few L1 sets
        final int tile = 16;
        for (int r0 = 0; r0 < rows; r0 += tile) {
            int r1 = Math.min(rows, r0 + tile);
            for (int c0 = 0; c0 < cols; c0 += tile) {
                int c1 = Math.min(cols, c0 + tile);
                for (int c = c0; c < c1; c++) {
                    int to = c * rows;
                    for (int r = r0; r < r1; r++) {
                        out[to + r] = in[r * cols + c];
                    }
                }
            }
        }
        MemorySegment.copy(out, 0, dst, F32, dstAt * Float.BYTES, rows * cols);
    }

    @Override
    public String toString() {
        return "PackedBlock[" + bits + "-bit " + order + " " + form + " " + heads + "x" + tokens + "x" + headDim
                + " group " + groupSize + ", " + byteSize() + " bytes]";
    }
}
