package dev.kvq.runtime.onnx.nativeapi;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Optional;
import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

/** What every {@link DeviceMemory} must do, byte for byte; each implementation's test runs all of it. */
abstract class DeviceMemoryContract {
    private DeviceMemory memory;
    private Arena arena;

    abstract DeviceMemory create();

    /** Checks {@link DeviceMemory#deviceMemoryInfo()} for this kind of memory. */
    abstract void checkDeviceMemoryInfo(Optional<long[]> info);

    abstract String expectedMemoryInfoName();

    @BeforeEach
    void open() {
        memory = create();
        arena = Arena.ofConfined();
    }

    @AfterEach
    void closeAll() {
        memory.close();
        arena.close();
    }

    @Test
    void allocateGivesZeroedBlocksAndCountsThemExactly() {
        long a = memory.allocate(1000);
        long b = memory.allocate(24);
        assertEquals(1024, memory.bytesAllocated());
        assertArrayEquals(new byte[1000], download(a, 1000));
        assertArrayEquals(new byte[24], download(b, 24));

        memory.free(a);
        assertEquals(24, memory.bytesAllocated());
        long c = memory.allocate(10);
        assertEquals(34, memory.bytesAllocated());
        assertEquals(1024, memory.peakBytesAllocated());
        memory.free(b);
        memory.free(c);
        assertEquals(0, memory.bytesAllocated());
        assertEquals(1024, memory.peakBytesAllocated());
    }

    @Test
    void uploadAndDownloadRoundTripAtOffsets() {
        byte[] data = random(4096, 1);
        MemorySegment src = arena.allocateFrom(ValueLayout.JAVA_BYTE, data);
        long block = memory.allocate(2048);

        memory.upload(src, 7, block + 13, 1000);
        MemorySegment dst = arena.allocate(1100);
        dst.fill((byte) 0x5A);
        memory.download(block + 13, dst, 50, 1000);

        assertArrayEquals(Arrays.copyOfRange(data, 7, 1007), dst.asSlice(50, 1000).toArray(ValueLayout.JAVA_BYTE));
        assertArrayEquals(filled(50, 0x5A), dst.asSlice(0, 50).toArray(ValueLayout.JAVA_BYTE), "before dstOffset");
        assertArrayEquals(filled(50, 0x5A), dst.asSlice(1050, 50).toArray(ValueLayout.JAVA_BYTE), "after the range");
        byte[] whole = download(block, 2048);
        assertArrayEquals(new byte[13], Arrays.copyOfRange(whole, 0, 13), "bytes before the upload stay zero");
        assertArrayEquals(new byte[1035], Arrays.copyOfRange(whole, 1013, 2048), "bytes after the upload stay zero");
    }

    @Test
    void heapSegmentsRoundTripToo() {
        byte[] data = random(300, 2);
        long block = memory.allocate(300);
        memory.upload(MemorySegment.ofArray(data), 0, block, 300);
        byte[] back = new byte[310];
        memory.download(block, MemorySegment.ofArray(back), 10, 300);
        assertArrayEquals(data, Arrays.copyOfRange(back, 10, 310));
    }

    @Test
    void upload2dHonoursBothPitchesAndLeavesTheGaps() {
        int srcOffset = 3;
        int srcPitch = 10;
        int dstPitch = 16;
        int width = 6;
        int height = 4;
        byte[] data = random(srcOffset + srcPitch * height, 3);
        long block = memory.allocate(8 + dstPitch * height);
        memory.upload(arena.allocateFrom(ValueLayout.JAVA_BYTE, filled(8 + dstPitch * height, 0xEE)), 0, block,
                8 + dstPitch * height);
        MemorySegment src = arena.allocateFrom(ValueLayout.JAVA_BYTE, data);

        memory.upload2d(src, srcOffset, srcPitch, block + 8, dstPitch, width, height);

        byte[] expected = filled(8 + dstPitch * height, 0xEE);
        for (int row = 0; row < height; row++) {
            System.arraycopy(data, srcOffset + row * srcPitch, expected, 8 + row * dstPitch, width);
        }
        assertArrayEquals(expected, download(block, expected.length));
    }

    @Test
    void upload2dFromTheHeap() {
        byte[] data = random(40, 4);
        long block = memory.allocate(64);
        memory.upload2d(MemorySegment.ofArray(data), 0, 10, block, 16, 10, 4);
        byte[] back = download(block, 64);
        for (int row = 0; row < 4; row++) {
            assertArrayEquals(Arrays.copyOfRange(data, row * 10, row * 10 + 10),
                    Arrays.copyOfRange(back, row * 16, row * 16 + 10), "row " + row);
            assertArrayEquals(new byte[6], Arrays.copyOfRange(back, row * 16 + 10, row * 16 + 16), "gap " + row);
        }
    }

    @Test
    void copy2dMovesRowsBetweenPitches() {
        byte[] data = random(4 * 24, 9);
        long a = memory.allocate(4 * 24);
        long b = memory.allocate(4 * 16 + 8);
        memory.upload(MemorySegment.ofArray(data), 0, a, data.length);
        memory.copy2d(a + 4, 24, b + 8, 16, 10, 4);
        memory.synchronize();

        byte[] expected = new byte[4 * 16 + 8];
        for (int row = 0; row < 4; row++) {
            System.arraycopy(data, 4 + row * 24, expected, 8 + row * 16, 10);
        }
        assertArrayEquals(expected, download(b, expected.length));
        assertIllegal(() -> memory.copy2d(a, 24, b + 8, 16, 17, 4)); // row wider than the destination's pitch
        assertIllegal(() -> memory.copy2d(a, 24, b + 8, 16, 10, 5)); // past the end of the destination
        assertIllegal(() -> memory.copy2d(a, 24, a + 10, 24, 10, 2)); // overlapping regions
    }

    @Test
    void copyMovesBytesBetweenBlocks() {
        byte[] data = random(500, 5);
        long a = memory.allocate(500);
        long b = memory.allocate(600);
        memory.upload(MemorySegment.ofArray(data), 0, a, 500);
        memory.copy(a + 100, b + 200, 300);
        memory.synchronize();

        byte[] expected = new byte[600];
        System.arraycopy(data, 100, expected, 200, 300);
        assertArrayEquals(expected, download(b, 600));
    }

    @Test
    void stagingBuffersAreZeroedUsableAndDieWithTheMemory() {
        MemorySegment staging = memory.allocateStaging(256);
        assertArrayEquals(new byte[256], staging.toArray(ValueLayout.JAVA_BYTE));
        byte[] data = random(256, 6);
        MemorySegment.copy(data, 0, staging, ValueLayout.JAVA_BYTE, 0, 256);
        long block = memory.allocate(256);
        memory.upload(staging, 0, block, 256);
        staging.fill((byte) 0);
        memory.download(block, staging, 0, 256);
        assertArrayEquals(data, staging.toArray(ValueLayout.JAVA_BYTE));
        assertEquals(256, memory.bytesAllocated(), "staging is not counted");

        memory.close();
        assertThrows(IllegalStateException.class, () -> staging.get(ValueLayout.JAVA_BYTE, 0));
    }

    @Test
    void transfersOutsideBlocksAreRefused() {
        long block = memory.allocate(100);
        MemorySegment host = arena.allocate(200);
        assertIllegal(() -> memory.upload(host, 0, block + 1, 100));
        assertIllegal(() -> memory.upload(host, 150, block, 100));
        assertIllegal(() -> memory.download(block - 1, host, 0, 10));
        assertIllegal(() -> memory.download(block, host, 0, 101));
        assertIllegal(() -> memory.copy(block, block + 50, 60));
        assertIllegal(() -> memory.upload2d(host, 0, 20, block, 30, 20, 4));
        assertIllegal(() -> memory.upload2d(host, 0, 10, block, 10, 20, 2));
        assertIllegal(() -> memory.free(block + 1));
        assertIllegal(() -> memory.allocate(0));
        memory.free(block);
        assertIllegal(() -> memory.free(block));
        assertIllegal(() -> memory.upload(host, 0, block, 1));
    }

    @Test
    void uploadBatchPlacesEveryPieceFromStaging() {
        checkBatches(memory.allocateStaging(1 << 16));
    }

    @Test
    void uploadBatchPlacesEveryPieceFromOtherHostMemory() {
        checkBatches(arena.allocate(1 << 16));
        checkBatches(MemorySegment.ofArray(new byte[1 << 16]));
    }

    /**
     * Batches of many pieces of varied widths, rows and pitches, as a decode step of sequences at different lengths
     * makes: three in a row without waiting, each from its own part of the source (so their tables, which may be read
     * until a synchronization, must not share bytes either), then one after synchronizing, from the start again.
     */
    private void checkBatches(MemorySegment src) {
        int blockBytes = 1 << 15;
        long[] blocks = {memory.allocate(blockBytes), memory.allocate(blockBytes)};
        byte[][] expected = {new byte[blockBytes], new byte[blockBytes]};
        Random random = new Random(11);
        long srcAt = 0;
        for (int round = 0; round < 4; round++) {
            if (round == 3) {
                memory.synchronize();
                srcAt = 0;
            }
            int count = 50 + random.nextInt(300);
            long[] pieces = new long[count * DeviceMemory.WORDS_PER_PIECE];
            // pieces of one batch go to disjoint places (a batch's copies may run in any order)
            int[] nextRow = {0, 0};
            int used = 0;
            for (int i = 0; i < count; i++) {
                int b = random.nextInt(2);
                int width = 1 + random.nextInt(24);
                int rows = 1 + random.nextInt(2);
                int pitch = width + random.nextInt(8);
                int dstAt = nextRow[b];
                if (dstAt + pitch * rows > blockBytes || srcAt + (long) width * rows > src.byteSize()) {
                    break;
                }
                nextRow[b] += pitch * rows;
                byte[] data = random(width * rows, random.nextLong());
                MemorySegment.copy(data, 0, src, ValueLayout.JAVA_BYTE, srcAt, data.length);
                for (int r = 0; r < rows; r++) {
                    System.arraycopy(data, r * width, expected[b], dstAt + r * pitch, width);
                }
                int p = i * DeviceMemory.WORDS_PER_PIECE;
                pieces[p] = srcAt;
                pieces[p + 1] = blocks[b] + dstAt;
                pieces[p + 2] = pitch;
                pieces[p + 3] = width;
                pieces[p + 4] = rows;
                srcAt += (long) width * rows;
                used++;
            }
            memory.uploadBatch(src, pieces, used);
            for (int b = 0; b < 2; b++) {
                assertArrayEquals(expected[b], download(blocks[b], blockBytes), "round " + round + ", block " + b);
            }
        }
    }

    @Test
    void emptyPiecesOfABatchMoveNothingAndTheOthersLand() {
        long block = memory.allocate(64);
        for (MemorySegment src : new MemorySegment[] {memory.allocateStaging(64), arena.allocate(64)}) {
            src.fill((byte) 9);
            // no bytes wide, no rows, then one real piece at the end of the block
            long[] pieces = {0, block, 8, 0, 3, 0, block, 8, 8, 0, 0, block + 48, 16, 16, 1};
            memory.uploadBatch(src, pieces, 3);
            memory.synchronize();
            byte[] expected = new byte[64];
            Arrays.fill(expected, 48, 64, (byte) 9);
            assertArrayEquals(expected, download(block, 64));
            memory.upload(MemorySegment.ofArray(new byte[64]), 0, block, 64);
        }
    }

    @Test
    void aBatchWithOnePieceOutsideItsBlockMovesNothing() {
        long block = memory.allocate(256);
        MemorySegment src = memory.allocateStaging(1024);
        src.fill((byte) 7);
        long[] pieces = {0, block, 16, 16, 4, 64, block + 200, 16, 16, 4};
        assertIllegal(() -> memory.uploadBatch(src, pieces, 2));
        assertIllegal(() -> memory.uploadBatch(src, pieces, 3));
        assertIllegal(() -> memory.uploadBatch(src, new long[] {1000, block, 16, 16, 4}, 1)); // past the source
        memory.synchronize();
        assertArrayEquals(new byte[256], download(block, 256));
        memory.uploadBatch(src, pieces, 1);
        memory.synchronize();
        assertArrayEquals(filled(64, 7), Arrays.copyOfRange(download(block, 256), 0, 64));
    }

    @Test
    void memoryInfoNamesTheDevice() {
        MemoryInfo info = memory.memoryInfo();
        assertEquals(expectedMemoryInfoName(), info.name());
        assertEquals(info, memory.memoryInfo(), "one memory info per memory");
        checkDeviceMemoryInfo(memory.deviceMemoryInfo());
    }

    @Test
    void closingFreesEverythingAndTwiceIsHarmless() {
        memory.allocate(64);
        MemoryInfo info = memory.memoryInfo();
        memory.close();
        memory.close();
        assertEquals(0, memory.bytesAllocated());
        assertEquals(ErrorCode.CLOSED, assertThrows(KvqException.class, () -> memory.allocate(8)).code());
        assertEquals(ErrorCode.CLOSED, assertThrows(KvqException.class, memory::synchronize).code());
        assertEquals(ErrorCode.CLOSED, assertThrows(KvqException.class, info::handle).code());
    }

    private byte[] download(long address, int bytes) {
        byte[] out = new byte[bytes];
        MemorySegment dst = arena.allocate(bytes);
        memory.download(address, dst, 0, bytes);
        MemorySegment.copy(dst, ValueLayout.JAVA_BYTE, 0, out, 0, bytes);
        return out;
    }

    private static void assertIllegal(Executable call) {
        assertEquals(ErrorCode.ILLEGAL_ARGUMENT, assertThrows(KvqException.class, call).code());
    }

    private static byte[] random(int bytes, long seed) {
        byte[] data = new byte[bytes];
        new Random(seed).nextBytes(data);
        return data;
    }

    private static byte[] filled(int bytes, int value) {
        byte[] data = new byte[bytes];
        Arrays.fill(data, (byte) value);
        return data;
    }
}
