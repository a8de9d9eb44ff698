package dev.kvq.spi;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * kvq's code packing: a dense little-endian bit stream. Code {@code j} of width {@code b} occupies bits
 * {@code [j*b, (j+1)*b)}, bit {@code k} of the stream being bit {@code k % 8} of byte {@code k / 8}. Widths
 * that do not divide 8 (3, 5, 6, 7) are packed densely, straddling bytes.
 */
public final class BitPacking {
    private static final ValueLayout.OfByte BYTE = ValueLayout.JAVA_BYTE;

    private BitPacking() {
    }

    /** Bytes needed for {@code count} codes of {@code bits} bits. */
    public static long packedBytes(long count, int bits) {
        return (count * bits + 7) >>> 3;
    }

    /**
     * Writes {@code n} codes from {@code codes[from..]} at code position {@code codeIndex} of {@code dst}. The
     * destination bits must still be zero (fresh allocation): codes are OR-ed in, which lets groups be
     * written in any order even when they share a byte.
     */
    public static void pack(int[] codes, int from, int n, int bits, MemorySegment dst, long codeIndex) {
        long bit = codeIndex * bits;
        if ((bit & 7) == 0) {
            long byteIndex = bit >>> 3;
            switch (bits) {
                case 8 -> {
                    for (int i = 0; i < n; i++) {
                        dst.set(BYTE, byteIndex + i, (byte) codes[from + i]);
                    }
                    return;
                }
                case 4 -> {
                    int pairs = n >>> 1;
                    for (int i = 0; i < pairs; i++) {
                        int k = from + 2 * i;
                        dst.set(BYTE, byteIndex + i, (byte) (codes[k] | codes[k + 1] << 4));
                    }
                    if ((n & 1) != 0) {
                        orByte(dst, byteIndex + pairs, codes[from + n - 1]);
                    }
                    return;
                }
                case 2 -> {
                    int quads = n >>> 2;
                    for (int i = 0; i < quads; i++) {
                        int k = from + 4 * i;
                        dst.set(BYTE, byteIndex + i,
                                (byte) (codes[k] | codes[k + 1] << 2 | codes[k + 2] << 4 | codes[k + 3] << 6));
                    }
                    for (int i = quads * 4; i < n; i++) {
                        orCode(dst, (codeIndex + i) * 2, codes[from + i]);
                    }
                    return;
                }
                default -> {
                }
            }
        }
        for (int i = 0; i < n; i++) {
            orCode(dst, (codeIndex + i) * bits, codes[from + i]);
        }
    }

    /** Reads {@code n} codes at code position {@code codeIndex} into {@code out[outFrom..]}. */
    public static void unpack(MemorySegment src, long codeIndex, int n, int bits, int[] out, int outFrom) {
        long bit = codeIndex * bits;
        if ((bit & 7) == 0) {
            long byteIndex = bit >>> 3;
            switch (bits) {
                case 8 -> {
                    for (int i = 0; i < n; i++) {
                        out[outFrom + i] = src.get(BYTE, byteIndex + i) & 0xFF;
                    }
                    return;
                }
                case 4 -> {
                    int pairs = n >>> 1;
                    for (int i = 0; i < pairs; i++) {
                        int b = src.get(BYTE, byteIndex + i) & 0xFF;
                        out[outFrom + 2 * i] = b & 0xF;
                        out[outFrom + 2 * i + 1] = b >>> 4;
                    }
                    if ((n & 1) != 0) {
                        out[outFrom + n - 1] = src.get(BYTE, byteIndex + pairs) & 0xF;
                    }
                    return;
                }
                case 2 -> {
                    int quads = n >>> 2;
                    for (int i = 0; i < quads; i++) {
                        int b = src.get(BYTE, byteIndex + i) & 0xFF;
                        int k = outFrom + 4 * i;
                        out[k] = b & 3;
                        out[k + 1] = (b >>> 2) & 3;
                        out[k + 2] = (b >>> 4) & 3;
                        out[k + 3] = b >>> 6;
                    }
                    for (int i = quads * 4; i < n; i++) {
                        out[outFrom + i] = get(src, codeIndex + i, 2);
                    }
                    return;
                }
                default -> {
                }
            }
        }
        for (int i = 0; i < n; i++) {
            out[outFrom + i] = get(src, codeIndex + i, bits);
        }
    }

    /** The code at position {@code j}. */
    public static int get(MemorySegment src, long j, int bits) {
        long bit = j * bits;
        long byteIndex = bit >>> 3;
        int shift = (int) (bit & 7);
        int window = src.get(BYTE, byteIndex) & 0xFF;
        if (shift + bits > 8) {
            window |= (src.get(BYTE, byteIndex + 1) & 0xFF) << 8;
        }
        return (window >>> shift) & ((1 << bits) - 1);
    }

    private static void orCode(MemorySegment dst, long bit, int code) {
        long byteIndex = bit >>> 3;
        int shift = (int) (bit & 7);
        int shifted = code << shift;
        orByte(dst, byteIndex, shifted & 0xFF);
        if ((shifted >>> 8) != 0) {
            orByte(dst, byteIndex + 1, shifted >>> 8);
        }
    }

    private static void orByte(MemorySegment dst, long index, int value) {
        dst.set(BYTE, index, (byte) (dst.get(BYTE, index) | value));
    }
}
