package dev.kvq.spi;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class BitPackingTest {
    @ParameterizedTest
    @ValueSource(ints = {1, 2, 3, 4, 5, 6, 7, 8})
    void roundTripsEveryWidthAtAnyOffset(int bits) {
        Random rnd = new Random(bits);
        int n = 1000;
        int[] codes = rnd.ints(n, 0, 1 << bits).toArray();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment packed = arena.allocate(BitPacking.packedBytes(n, bits));
            // Write in uneven runs so that runs start and end inside bytes.
            int pos = 0;
            int[] runs = {1, 7, 13, 64, 3, 200, 5};
            for (int r = 0; pos < n; r++) {
                int len = Math.min(runs[r % runs.length], n - pos);
                BitPacking.pack(codes, pos, len, bits, packed, pos);
                pos += len;
            }
            int[] back = new int[n];
            BitPacking.unpack(packed, 0, n, bits, back, 0);
            assertArrayEquals(codes, back);
            int[] part = new int[101];
            BitPacking.unpack(packed, 333, 101, bits, part, 0);
            for (int i = 0; i < part.length; i++) {
                assertEquals(codes[333 + i], part[i]);
                assertEquals(codes[333 + i], BitPacking.get(packed, 333 + i, bits));
            }
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {1, 3, 5, 6, 7})
    void oddWidthsFormALittleEndianBitStream(int bits) {
        assertEquals((10L * bits + 7) / 8, BitPacking.packedBytes(10, bits));
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment packed = arena.allocate(BitPacking.packedBytes(2, bits));
            BitPacking.pack(new int[] {1, 1}, 0, 2, bits, packed, 0);
            long word = 0;
            for (int i = 0; i < packed.byteSize(); i++) {
                word |= (packed.get(java.lang.foreign.ValueLayout.JAVA_BYTE, i) & 0xFFL) << (8 * i);
            }
            assertEquals(1L | 1L << bits, word);
        }
    }

    @ParameterizedTest
    @ValueSource(ints = {2, 4})
    void twoAndFourBitsUsePlanarSixteenByteChunks(int bits) {
        int perChunk = 128 / bits;
        assertEquals(16, BitPacking.packedBytes(perChunk, bits));
        assertEquals(32, BitPacking.packedBytes(perChunk + 1, bits));
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment packed = arena.allocate(16);
            int[] codes = new int[perChunk];
            codes[0] = 1;                // plane 0, byte 0, bits [0, bits)
            codes[16] = 1;               // plane 1, byte 0, bits [bits, 2 bits)
            codes[17] = (1 << bits) - 1; // plane 1, byte 1
            BitPacking.pack(codes, 0, perChunk, bits, packed, 0);
            assertEquals(1 | 1 << bits, packed.get(java.lang.foreign.ValueLayout.JAVA_BYTE, 0) & 0xFF);
            assertEquals(((1 << bits) - 1) << bits, packed.get(java.lang.foreign.ValueLayout.JAVA_BYTE, 1) & 0xFF);
        }
    }
}
