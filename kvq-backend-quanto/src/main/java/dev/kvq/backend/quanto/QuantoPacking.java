package dev.kvq.backend.quanto;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.spi.AffineForm;
import dev.kvq.spi.BitPacking;
import dev.kvq.spi.CodeOrder;
import dev.kvq.spi.PackedBlock;
import java.lang.foreign.SegmentAllocator;

/**
 * Converts kvq blocks of 2/4-bit codes to and from optimum-quanto's {@code pack_weights} layout. quanto packs its
 * grouped code matrix ({@code [N/gs, gs]} for axis 0, {@code [gs, groups]} for axis -1) along dim 0: with
 * {@code k = 8/bits} codes per byte and {@code P = ceil(rows/k)} packed rows, chunk {@code i} (rows
 * {@code [i*P, (i+1)*P)}) goes to bits {@code [bits*i, bits*(i+1))}, the first chunk in the least significant bits
 * (the opposite of HQQ); a short last chunk leaves its bits zero. int8 is stored unpacked by quanto.
 */
public final class QuantoPacking {
    private QuantoPacking() {
    }

    /** quanto's packed bytes ({@code packedRows x columns}) and the code matrix shape. */
    public record Packed(int bits, int rows, int columns, byte[] bytes) {
        public int packedRows() {
            int k = 8 / bits;
            return (rows + k - 1) / k;
        }
    }

    private static int[] matrix(PackedBlock b) {
        int groups = Math.toIntExact(b.groups());
        return b.order() == CodeOrder.TOKEN_MAJOR ? new int[] {groups, b.groupSize()} : new int[] {b.groupSize(), groups};
    }

    private static long codeIndex(CodeOrder order, int groupSize, int columns, int row, int column) {
        return order == CodeOrder.TOKEN_MAJOR ? (long) row * columns + column : (long) column * groupSize + row;
    }

    public static Packed toQuanto(PackedBlock b) {
        if (b.bits() != 2 && b.bits() != 4) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "quanto packs only 2- and 4-bit codes, not " + b.bits());
        }
        int[] m = matrix(b);
        int rows = m[0];
        int cols = m[1];
        int bits = b.bits();
        Packed p = new Packed(bits, rows, cols, null);
        int packedRows = p.packedRows();
        byte[] bytes = new byte[packedRows * cols];
        for (int r = 0; r < rows; r++) {
            int chunk = r / packedRows;
            int pr = r % packedRows;
            for (int c = 0; c < cols; c++) {
                bytes[pr * cols + c] |= (byte) (b.code(codeIndex(b.order(), b.groupSize(), cols, r, c)) << (bits * chunk));
            }
        }
        return new Packed(bits, rows, cols, bytes);
    }

    /** quanto's code matrix ({@code rows x columns}, row-major). */
    public static int[] unpack(Packed p) {
        int[] c = new int[p.rows() * p.columns()];
        int packedRows = p.packedRows();
        int mask = (1 << p.bits()) - 1;
        for (int r = 0; r < p.rows(); r++) {
            int chunk = r / packedRows;
            int pr = r % packedRows;
            for (int col = 0; col < p.columns(); col++) {
                c[r * p.columns() + col] = (p.bytes()[pr * p.columns() + col] >>> (p.bits() * chunk)) & mask;
            }
        }
        return c;
    }

    /**
     * A kvq block from quanto's packed codes, {@code scale} and {@code shift} per group (dequantized =
     * scale * q - shift), for a {@code [heads, tokens, headDim]} tensor quantized with {@code axis} and {@code groupSize}.
     */
    public static PackedBlock fromQuanto(Packed p, float[] scale, float[] shift, int axis, int groupSize, int heads,
                                         int tokens, int headDim, SegmentAllocator allocator) {
        CodeOrder order = axis == 0 ? CodeOrder.TOKEN_MAJOR : CodeOrder.CHANNEL_MAJOR;
        PackedBlock b = PackedBlock.allocate(allocator, p.bits(), order, AffineForm.SCALE_MIN, 0, heads, tokens, headDim,
                groupSize);
        int[] m = matrix(b);
        if (m[0] != p.rows() || m[1] != p.columns() || scale.length != b.groups() || shift.length != b.groups()) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "quanto data " + p.rows() + "x" + p.columns() + " with "
                    + scale.length + " scales does not match a " + heads + "x" + tokens + "x" + headDim
                    + " tensor with axis " + axis + " and group " + groupSize);
        }
        int[] codes = unpack(p);
        int[] one = new int[1];
        for (int r = 0; r < p.rows(); r++) {
            for (int c = 0; c < p.columns(); c++) {
                one[0] = codes[r * p.columns() + c];
                BitPacking.pack(one, 0, 1, p.bits(), b.codes(), codeIndex(order, groupSize, p.columns(), r, c));
            }
        }
        for (int g = 0; g < scale.length; g++) {
            b.setGroup(g, scale[g], -shift[g]);
        }
        return b;
    }
}
