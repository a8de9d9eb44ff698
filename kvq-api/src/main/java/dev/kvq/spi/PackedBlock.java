package dev.kvq.spi;

import dev.kvq.KvqException;
import dev.kvq.ErrorCode;
import dev.kvq.tensor.KvView;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SegmentAllocator;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

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
    private static final VectorSpecies<Float> SPECIES = VectorSupport.floatSpecies();

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

    /** The value of code position {@code j} (slow path, for tests and tools). */
    public float value(long j) {
        long g = j / groupSize;
        return decode(code(j), scale(g), zero(g));
    }

    private float decode(int u, float scale, float zero) {
        return form == AffineForm.ZERO_POINT ? ((float) (u + codeOffset) + zero) * scale : u * scale + zero;
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
        int lineLength = switch (order) {
            case TOKEN_MAJOR -> headDim;
            case HEAD_CHANNEL_MAJOR, CHANNEL_MAJOR -> tokens;
            case STRIDED -> groupSize;
        };
        int[] codeScratch = new int[lineLength];
        float[] valueScratch = new float[lineLength];
        switch (order) {
            case TOKEN_MAJOR -> {
                for (int h = 0; h < heads; h++) {
                    for (int t = 0; t < tokens; t++) {
                        long j = ((long) h * tokens + t) * headDim;
                        decodeLine(j, headDim, codeScratch, valueScratch);
                        storeContiguous(valueScratch, headDim, dst.segment(), dst.rowIndex(h, t));
                    }
                }
            }
            case HEAD_CHANNEL_MAJOR -> {
                for (int h = 0; h < heads; h++) {
                    for (int d = 0; d < headDim; d++) {
                        long j = ((long) h * headDim + d) * tokens;
                        decodeLine(j, tokens, codeScratch, valueScratch);
                        scatter(valueScratch, tokens, dst.segment(), dst.rowIndex(h, 0) + d, headDim);
                    }
                }
            }
            case CHANNEL_MAJOR -> {
                long rows = (long) heads * tokens;
                for (int d = 0; d < headDim; d++) {
                    for (int h = 0; h < heads; h++) {
                        long j = d * rows + (long) h * tokens;
                        decodeLine(j, tokens, codeScratch, valueScratch);
                        scatter(valueScratch, tokens, dst.segment(), dst.rowIndex(h, 0) + d, headDim);
                    }
                }
            }
            case STRIDED -> {
                long groups = groups();
                long perHead = (long) tokens * headDim;
                for (long c = 0; c < groups; c++) {
                    decodeLine(c * groupSize, groupSize, codeScratch, valueScratch);
                    for (int r = 0; r < groupSize; r++) {
                        long i = c + r * groups;
                        int h = (int) (i / perHead);
                        long rem = i % perHead;
                        dst.segment().setAtIndex(F32, dst.rowIndex(h, 0) + rem, valueScratch[r]);
                    }
                }
            }
        }
    }

    /** Decodes codes {@code [j, j+n)} (which may span several groups) into {@code out}. */
    private void decodeLine(long j, int n, int[] codeScratch, float[] out) {
        BitPacking.unpack(codes, j, n, bits, codeScratch, 0);
        int i = 0;
        while (i < n) {
            long g = (j + i) / groupSize;
            int end = (int) Math.min(n, (g + 1) * groupSize - j);
            float scale = scale(g);
            float zero = zero(g);
            affine(codeScratch, i, end, scale, zero, out);
            i = end;
        }
    }

    private void affine(int[] u, int from, int to, float scale, float zero, float[] out) {
        if (form == AffineForm.ZERO_POINT) {
            for (int i = from; i < to; i++) {
                out[i] = ((float) (u[i] + codeOffset) + zero) * scale;
            }
        } else {
            for (int i = from; i < to; i++) {
                out[i] = u[i] * scale + zero;
            }
        }
    }

    private static void storeContiguous(float[] values, int n, MemorySegment dst, long floatIndex) {
        int i = 0;
        if (SPECIES != null) {
            int bound = SPECIES.loopBound(n);
            for (; i < bound; i += SPECIES.length()) {
                FloatVector.fromArray(SPECIES, values, i)
                        .intoMemorySegment(dst, (floatIndex + i) * Float.BYTES, ByteOrder.nativeOrder());
            }
        }
        for (; i < n; i++) {
            dst.setAtIndex(F32, floatIndex + i, values[i]);
        }
    }

    private static void scatter(float[] values, int n, MemorySegment dst, long floatIndex, int stride) {
        for (int i = 0; i < n; i++) {
            dst.setAtIndex(F32, floatIndex + (long) i * stride, values[i]);
        }
    }

    @Override
    public String toString() {
        return "PackedBlock[" + bits + "-bit " + order + " " + form + " " + heads + "x" + tokens + "x" + headDim
                + " group " + groupSize + ", " + byteSize() + " bytes]";
    }
}
