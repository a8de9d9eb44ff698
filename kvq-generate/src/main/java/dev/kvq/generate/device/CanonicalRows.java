package dev.kvq.generate.device;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.spi.BitPacking;
import dev.kvq.spi.CodeOrder;
import dev.kvq.spi.PackedBlock;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Writes tokens of a backend's {@link PackedBlock} in the device's canonical form ({@link
 * dev.kvq.generate.spi.StoredRun}): token-major rows of codes, and one scale and zero per group. Codes and
 * parameters are copied unchanged, so the device decodes exactly the values the host would.
 */
final class CanonicalRows {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ValueLayout.OfShort F16 = ValueLayout.JAVA_SHORT_UNALIGNED;

    private CanonicalRows() {
    }

    /** Position in {@code b}'s code order of element {@code (h, t, d)}. */
    static long codeIndex(PackedBlock b, int h, int t, int d) {
        long heads = b.heads();
        long tokens = b.tokens();
        long dim = b.headDim();
        return switch (b.order()) {
            case TOKEN_MAJOR -> (h * tokens + t) * dim + d;
            case HEAD_CHANNEL_MAJOR -> (h * dim + d) * tokens + t;
            case CHANNEL_MAJOR -> d * heads * tokens + h * tokens + t;
            case STRIDED -> throw new KvqException(ErrorCode.UNSUPPORTED, "blocks whose groups stride across the "
                    + "block (hqq axis 0) have no device form; use axis 1, another backend, or placement host");
        };
    }

    /** Whether whole rows of codes can be copied as bytes. */
    private static boolean rowsAsBytes(PackedBlock b) {
        return b.order() == CodeOrder.TOKEN_MAJOR
                && (b.bits() == 8 || b.headDim() % BitPacking.chunkCodes(b.bits()) == 0);
    }

    /**
     * Writes the codes of tokens {@code [t0, t0 + n)} of every head of {@code b}: token {@code i}, head {@code h}
     * goes to {@code dst} at {@code offset + i * tokenPitch + h * headPitch}. Rows must be zero where codes are packed
     * bit by bit. {@code row} holds a row's codes ({@code headDim}); {@code columns}, a multiple of {@code headDim},
     * the codes of several tokens when the block keeps a channel's tokens together.
     */
    static void codes(PackedBlock b, int t0, int n, MemorySegment dst, long offset, long tokenPitch, long headPitch,
                      int[] row, int[] columns) {
        int dim = b.headDim();
        int bits = b.bits();
        long rowBytes = (long) dim * bits / 8;
        MemorySegment codes = b.codes();
        if (rowsAsBytes(b)) {
            for (int i = 0; i < n; i++) {
                for (int h = 0; h < b.heads(); h++) {
                    MemorySegment.copy(codes, ((long) h * b.tokens() + t0 + i) * rowBytes, dst,
                            offset + i * tokenPitch + h * headPitch, rowBytes);
                }
            }
            return;
        }
        if (b.order() == CodeOrder.HEAD_CHANNEL_MAJOR || b.order() == CodeOrder.CHANNEL_MAJOR) {
            transposed(b, t0, n, dst, offset, tokenPitch, headPitch, row, columns);
            return;
        }
        for (int i = 0; i < n; i++) {
            for (int h = 0; h < b.heads(); h++) {
                for (int d = 0; d < dim; d++) {
                    row[d] = b.code(codeIndex(b, h, t0 + i, d));
                }
                long at = offset + i * tokenPitch + h * headPitch;
                dst.asSlice(at, rowBytes).fill((byte) 0);
                BitPacking.pack(row, 0, dim, bits, dst, at * 8 / bits);
            }
        }
    }

    /**
     * {@link #codes} for blocks that keep each channel's tokens together (KIVI's keys): a head's channels are unpacked
     * a run of tokens at a time into {@code columns}, then each token's row is gathered from them and packed, instead
     * of reading every code alone.
     */
    private static void transposed(PackedBlock b, int t0, int n, MemorySegment dst, long offset, long tokenPitch,
                                   long headPitch, int[] row, int[] columns) {
        int dim = b.headDim();
        int bits = b.bits();
        long rowBytes = (long) dim * bits / 8;
        int step = columns.length / dim;
        for (int h = 0; h < b.heads(); h++) {
            for (int i0 = 0; i0 < n; i0 += step) {
                int m = Math.min(step, n - i0);
                for (int d = 0; d < dim; d++) {
                    BitPacking.unpack(b.codes(), codeIndex(b, h, t0 + i0, d), m, bits, columns, d * m);
                }
                for (int i = 0; i < m; i++) {
                    for (int d = 0; d < dim; d++) {
                        row[d] = columns[d * m + i];
                    }
                    long at = offset + (i0 + i) * tokenPitch + h * headPitch;
                    dst.asSlice(at, rowBytes).fill((byte) 0);
                    BitPacking.pack(row, 0, dim, bits, dst, at * 8 / bits);
                }
            }
        }
    }

    /**
     * Writes the scales ({@code scales}) or zeros of tokens {@code [t0, t0 + n)} for groups along channels of size
     * {@code group}: token {@code i}, head {@code h}, group {@code g} at {@code offset + i * tokenPitch + h * headPitch
     * + g * paramBytes}.
     */
    static void tokenParams(PackedBlock b, boolean scales, int t0, int n, int group, MemorySegment dst, long offset,
                            long tokenPitch, long headPitch, boolean half) {
        int perRow = b.headDim() / group;
        for (int i = 0; i < n; i++) {
            for (int h = 0; h < b.heads(); h++) {
                for (int g = 0; g < perRow; g++) {
                    long blockGroup = codeIndex(b, h, t0 + i, g * group) / b.groupSize();
                    put(dst, offset + i * tokenPitch + h * headPitch, g, param(b, scales, blockGroup), half);
                }
            }
        }
    }

    /**
     * Writes the scales or zeros of tokens {@code [t0, t0 + n)} ({@code t0} and {@code n} multiples of {@code group})
     * for groups along tokens: token group {@code k}, head {@code h}, channel {@code d} at {@code offset + k *
     * groupPitch + (h * headDim + d) * paramBytes}.
     */
    static void channelParams(PackedBlock b, boolean scales, int t0, int n, int group, MemorySegment dst, long offset,
                              long groupPitch, boolean half) {
        int dim = b.headDim();
        for (int k = 0; k < n / group; k++) {
            for (int h = 0; h < b.heads(); h++) {
                for (int d = 0; d < dim; d++) {
                    long blockGroup = codeIndex(b, h, t0 + k * group, d) / b.groupSize();
                    put(dst, offset + k * groupPitch, (long) h * dim + d, param(b, scales, blockGroup), half);
                }
            }
        }
    }

    private static float param(PackedBlock b, boolean scales, long group) {
        return scales ? b.scale(group) : b.zero(group);
    }

    private static void put(MemorySegment dst, long base, long index, float value, boolean half) {
        if (half) {
            dst.set(F16, base + index * 2, Float.floatToFloat16(value));
        } else {
            dst.set(F32, base + index * 4, value);
        }
    }
}
