package dev.kvq.spi;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * kvq's code packing; every width is packed densely (no unused bits inside a block's code bytes).
 *
 * <ul>
 *   <li><b>8 bits</b>: one code per byte.</li>
 *   <li><b>4 and 2 bits</b>: planar chunks of 16 bytes holding {@code 128 / bits} codes. Byte {@code k} of chunk
 *       {@code c} holds codes {@code c*C + k + 16*p} at bit offset {@code p*bits}, for planes {@code p = 0 ..
 *       8/bits - 1} ({@code C = 128 / bits}). Sixteen consecutive codes therefore sit in one plane of sixteen
 *       consecutive bytes, so a SIMD decoder shifts, masks and stores them contiguously, with no shuffles (the
 *       layout llama.cpp's Q4_0 uses for nibbles). A last partial chunk still occupies 16 bytes.</li>
 *   <li><b>1, 3, 5, 6, 7 bits</b>: a little-endian bit stream: code {@code j} occupies bits {@code [j*b, (j+1)*b)},
 *       bit {@code k} being bit {@code k % 8} of byte {@code k / 8}; codes straddle bytes.</li>
 * </ul>
 */
public final class BitPacking {
    private static final ValueLayout.OfByte BYTE = ValueLayout.JAVA_BYTE;
    /** Bytes per planar chunk. */
    public static final int CHUNK_BYTES = 16;

    private BitPacking() {
    }

    /** Whether {@code bits} uses planar chunks. */
    public static boolean planar(int bits) {
        return bits == 4 || bits == 2;
    }

    /** Codes per planar chunk ({@code 128 / bits}). */
    public static int chunkCodes(int bits) {
        return CHUNK_BYTES * 8 / bits;
    }

    /** Bytes needed for {@code count} codes of {@code bits} bits. */
    public static long packedBytes(long count, int bits) {
        if (planar(bits)) {
            long chunk = chunkCodes(bits);
            return (count + chunk - 1) / chunk * CHUNK_BYTES;
        }
        return (count * bits + 7) >>> 3;
    }

    /**
     * The first byte of the 16 bytes that hold codes {@code [j, j+16)}, for {@code j % 16 == 0} and a width of 8 or a
     * planar width: one plane of one chunk (or 16 plain bytes). Vector kernels read and write whole segments.
     */
    public static long segmentByte(long j, int bits) {
        return bits == 8 ? j : j / chunkCodes(bits) * CHUNK_BYTES;
    }

    /** The bit offset of the plane holding codes {@code [j, j+16)} ({@code j % 16 == 0}). */
    public static int segmentShift(long j, int bits) {
        return bits == 8 ? 0 : (int) ((j % chunkCodes(bits)) / CHUNK_BYTES) * bits;
    }

    /** Byte index of code {@code j}. */
    static long byteOf(long j, int bits) {
        if (planar(bits)) {
            int chunk = chunkCodes(bits);
            return j / chunk * CHUNK_BYTES + (j % chunk) % CHUNK_BYTES;
        }
        return bits == 8 ? j : (j * bits) >>> 3;
    }

    /** Bit offset of code {@code j} within its (first) byte. */
    static int shiftOf(long j, int bits) {
        if (planar(bits)) {
            return (int) ((j % chunkCodes(bits)) / CHUNK_BYTES) * bits;
        }
        return bits == 8 ? 0 : (int) ((j * bits) & 7);
    }

    /**
     * Writes {@code n} codes from {@code codes[from..]} at code position {@code codeIndex} of {@code dst}, which must
     * still be zero there (a fresh allocation): codes are OR-ed in, so groups can be written in any order even when
     * they share a byte.
     */
    public static void pack(int[] codes, int from, int n, int bits, MemorySegment dst, long codeIndex) {
        if (bits == 8) {
            for (int i = 0; i < n; i++) {
                dst.set(BYTE, codeIndex + i, (byte) codes[from + i]);
            }
            return;
        }
        if (planar(bits) && codeIndex % CHUNK_BYTES == 0 && n % CHUNK_BYTES == 0) {
            // whole planes: sixteen codes go to one plane of sixteen bytes
            for (int run = 0; run < n; run += CHUNK_BYTES) {
                long j = codeIndex + run;
                long base = byteOf(j, bits);
                int shift = shiftOf(j, bits);
                for (int k = 0; k < CHUNK_BYTES; k++) {
                    orByte(dst, base + k, codes[from + run + k] << shift);
                }
            }
            return;
        }
        for (int i = 0; i < n; i++) {
            orCode(dst, codeIndex + i, bits, codes[from + i]);
        }
    }

    /** Reads {@code n} codes at code position {@code codeIndex} into {@code out[outFrom..]}. */
    public static void unpack(MemorySegment src, long codeIndex, int n, int bits, int[] out, int outFrom) {
        if (bits == 8) {
            for (int i = 0; i < n; i++) {
                out[outFrom + i] = src.get(BYTE, codeIndex + i) & 0xFF;
            }
            return;
        }
        int mask = (1 << bits) - 1;
        if (planar(bits) && codeIndex % CHUNK_BYTES == 0 && n % CHUNK_BYTES == 0) {
            for (int run = 0; run < n; run += CHUNK_BYTES) {
                long j = codeIndex + run;
                long base = byteOf(j, bits);
                int shift = shiftOf(j, bits);
                for (int k = 0; k < CHUNK_BYTES; k++) {
                    out[outFrom + run + k] = ((src.get(BYTE, base + k) & 0xFF) >>> shift) & mask;
                }
            }
            return;
        }
        for (int i = 0; i < n; i++) {
            out[outFrom + i] = get(src, codeIndex + i, bits);
        }
    }

    /** The code at position {@code j}. */
    public static int get(MemorySegment src, long j, int bits) {
        long byteIndex = byteOf(j, bits);
        int shift = shiftOf(j, bits);
        int window = src.get(BYTE, byteIndex) & 0xFF;
        if (shift + bits > 8) {
            window |= (src.get(BYTE, byteIndex + 1) & 0xFF) << 8;
        }
        return (window >>> shift) & ((1 << bits) - 1);
    }

    private static void orCode(MemorySegment dst, long j, int bits, int code) {
        long byteIndex = byteOf(j, bits);
        int shifted = code << shiftOf(j, bits);
        orByte(dst, byteIndex, shifted & 0xFF);
        if ((shifted >>> 8) != 0) {
            orByte(dst, byteIndex + 1, shifted >>> 8);
        }
    }

    private static void orByte(MemorySegment dst, long index, int value) {
        dst.set(BYTE, index, (byte) (dst.get(BYTE, index) | value));
    }
}
