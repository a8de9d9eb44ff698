package dev.kvq.backend.hqq;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.spi.AffineForm;
import dev.kvq.spi.BitPacking;
import dev.kvq.spi.CodeOrder;
import dev.kvq.spi.PackedBlock;
import java.lang.foreign.SegmentAllocator;

/**
 * Converts between kvq's packed blocks and HQQ's own byte layouts ({@code hqq/core/bitpack.py}), so caches packed by
 * HQQ can be read and written. HQQ packs its code matrix ({@code [N/gs, gs]} for axis 1, {@code [gs, N/gs]} for
 * axis 0) along dim 0, splitting the rows into equal contiguous chunks with the first chunk in the most significant
 * bits: 8 bits plain; 4 bits {@code c[r]<<4 | c[r+R/2]}; 2 bits four chunks at shifts 6, 4, 2, 0; 1 bit chunk j at
 * bit 7-j; 3 bits rows zero-padded to a multiple of 10 and chunk j at bits 27-3j of an int32.
 */
public final class HqqPacking {
    private HqqPacking() {
    }

    /** HQQ's packed form of one block. Exactly one of {@code bytes} (widths 1, 2, 4, 8) and {@code words} (3) is set. */
    public record Packed(int bits, int rows, int columns, byte[] bytes, int[] words) {
        /** Rows of the packed matrix. */
        public int packedRows() {
            return switch (bits) {
                case 8 -> rows;
                case 4 -> rows / 2;
                case 2 -> rows / 4;
                case 1 -> rows / 8;
                case 3 -> (rows + 9) / 10;
                default -> throw new IllegalStateException();
            };
        }
    }

    /** Rows and columns of HQQ's code matrix for a block. */
    static int[] matrix(PackedBlock b) {
        int groups = Math.toIntExact(b.groups());
        return b.order() == CodeOrder.TOKEN_MAJOR ? new int[] {groups, b.groupSize()} : new int[] {b.groupSize(), groups};
    }

    /** The code at (row, column) of HQQ's matrix, as an index into the block's code order. */
    private static long codeIndex(CodeOrder order, int groupSize, int columns, int row, int column) {
        // axis 1: [groups, gs] row-major == kvq's token-major order; axis 0: [gs, groups], column c is group c.
        return order == CodeOrder.TOKEN_MAJOR ? (long) row * columns + column : (long) column * groupSize + row;
    }

    /** Packs a block's codes in HQQ's layout. */
    public static Packed toHqq(PackedBlock b) {
        checkOrder(b.order());
        int[] m = matrix(b);
        int rows = m[0];
        int cols = m[1];
        int bits = b.bits();
        checkRows(bits, rows);
        int[][] c = new int[rows][cols];
        int[] buf = new int[cols];
        for (int r = 0; r < rows; r++) {
            for (int col = 0; col < cols; col++) {
                buf[col] = b.code(codeIndex(b.order(), b.groupSize(), cols, r, col));
            }
            System.arraycopy(buf, 0, c[r], 0, cols);
        }
        if (bits == 3) {
            int packedRows = (rows + 9) / 10;
            int[] words = new int[packedRows * cols];
            for (int j = 0; j < 10; j++) {
                for (int r = 0; r < packedRows; r++) {
                    int src = j * packedRows + r;
                    if (src < rows) {
                        for (int col = 0; col < cols; col++) {
                            words[r * cols + col] |= c[src][col] << (27 - 3 * j);
                        }
                    }
                }
            }
            return new Packed(bits, rows, cols, null, words);
        }
        int chunks = 8 / bits;
        int packedRows = rows / chunks;
        byte[] bytes = new byte[packedRows * cols];
        for (int j = 0; j < chunks; j++) {
            int shift = 8 - bits * (j + 1);
            for (int r = 0; r < packedRows; r++) {
                for (int col = 0; col < cols; col++) {
                    bytes[r * cols + col] |= (byte) (c[j * packedRows + r][col] << shift);
                }
            }
        }
        return new Packed(bits, rows, cols, bytes, null);
    }

    /** HQQ's code matrix ({@code rows x columns}, row-major) from its packed form. */
    public static int[] unpack(Packed p) {
        int rows = p.rows();
        int cols = p.columns();
        int[] c = new int[rows * cols];
        int packedRows = p.packedRows();
        if (p.bits() == 3) {
            for (int j = 0; j < 10; j++) {
                for (int r = 0; r < packedRows; r++) {
                    int dst = j * packedRows + r;
                    if (dst < rows) {
                        for (int col = 0; col < cols; col++) {
                            c[dst * cols + col] = (p.words()[r * cols + col] >>> (27 - 3 * j)) & 7;
                        }
                    }
                }
            }
            return c;
        }
        int bits = p.bits();
        int chunks = 8 / bits;
        int mask = (1 << bits) - 1;
        for (int j = 0; j < chunks; j++) {
            int shift = 8 - bits * (j + 1);
            for (int r = 0; r < packedRows; r++) {
                for (int col = 0; col < cols; col++) {
                    c[(j * packedRows + r) * cols + col] = (p.bytes()[r * cols + col] >>> shift) & mask;
                }
            }
        }
        return c;
    }

    /**
     * A kvq block from HQQ's packed codes and its meta ({@code scale} and {@code zero} per group, HQQ's convention:
     * dequantized = (q - zero) * scale), for a {@code [heads, tokens, headDim]} tensor quantized with {@code axis}
     * and {@code groupSize}.
     */
    public static PackedBlock fromHqq(Packed p, float[] scale, float[] zero, int axis, int groupSize, int heads,
                                      int tokens, int headDim, SegmentAllocator allocator) {
        CodeOrder order = axis == 1 ? CodeOrder.TOKEN_MAJOR : CodeOrder.STRIDED;
        PackedBlock b = PackedBlock.allocate(allocator, p.bits(), order, AffineForm.ZERO_POINT, 0, heads, tokens,
                headDim, groupSize);
        int[] m = matrix(b);
        if (m[0] != p.rows() || m[1] != p.columns()) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "HQQ matrix " + p.rows() + "x" + p.columns()
                    + " does not match a " + heads + "x" + tokens + "x" + headDim + " tensor with axis " + axis
                    + " and group " + groupSize + " (" + m[0] + "x" + m[1] + ")");
        }
        if (scale.length != b.groups() || zero.length != b.groups()) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "HQQ meta has " + scale.length + " scales and "
                    + zero.length + " zeros for " + b.groups() + " groups");
        }
        int[] c = unpack(p);
        int[] one = new int[1];
        for (int r = 0; r < p.rows(); r++) {
            for (int col = 0; col < p.columns(); col++) {
                one[0] = c[r * p.columns() + col];
                BitPacking.pack(one, 0, 1, p.bits(), b.codes(), codeIndex(order, groupSize, p.columns(), r, col));
            }
        }
        for (int g = 0; g < scale.length; g++) {
            b.setGroup(g, scale[g], -zero[g]);
        }
        return b;
    }

    private static void checkOrder(CodeOrder order) {
        if (order != CodeOrder.TOKEN_MAJOR && order != CodeOrder.STRIDED) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "HQQ's layout exists for its two groupings only, not " + order);
        }
    }

    private static void checkRows(int bits, int rows) {
        int chunks = switch (bits) {
            case 8, 3 -> 1;
            case 4 -> 2;
            case 2 -> 4;
            case 1 -> 8;
            default -> throw new KvqException(ErrorCode.UNSUPPORTED, "HQQ has no " + bits + "-bit layout");
        };
        if (rows % chunks != 0) {
            // HQQ itself does not check this and packs wrongly or fails.
            throw new KvqException(ErrorCode.UNSUPPORTED, "HQQ's " + bits + "-bit layout needs a row count divisible by "
                    + chunks + ", the matrix has " + rows + " rows");
        }
    }
}
