package dev.kvq.runtime.onnx.nativeapi;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Map;
import java.util.TreeMap;

/**
 * What both kinds of {@link DeviceMemory} share: the ledger of blocks (address to size) that every transfer is
 * checked against, the byte counts, staging buffers and closing. Subclasses only move bytes. One lock guards all
 * of it, transfers included, so a block cannot be freed while it is being copied.
 */
@SuppressWarnings("restricted") // native calls are what this class is for
abstract class AbstractDeviceMemory implements DeviceMemory {
    private final String device;
    private final TreeMap<Long, Long> blocks = new TreeMap<>();
    /** Staging buffers handed out and not yet freed, address to size. */
    private final TreeMap<Long, Long> stagingBlocks = new TreeMap<>();
    private Arena staging; // staging buffers are reinterpreted into it and freed when it closes
    private MemoryInfo memoryInfo;
    private long bytesAllocated;
    private long peakBytesAllocated;
    private boolean closed;

    AbstractDeviceMemory(String device) {
        this.device = device;
    }

    // ---- what a subclass does ----

    /** A zero-filled block of {@code bytes} > 0. */
    abstract long allocateBlock(long bytes);

    abstract void freeBlock(long address);

    abstract void uploadBytes(MemorySegment src, long srcOffset, long dstAddress, long bytes);

    abstract void uploadRows(MemorySegment src, long srcOffset, long srcPitch, long dstAddress, long dstPitch,
                             long widthBytes, long height);

    /**
     * Moves checked pieces ({@link DeviceMemory#uploadBatch}); by default one {@link #uploadRows} each, skipping empty
     * ones as {@link #upload2d} does.
     */
    void uploadPieces(MemorySegment src, long[] pieces, int count) {
        for (int i = 0; i < count; i++) {
            int p = i * WORDS_PER_PIECE;
            if (pieces[p + 3] > 0 && pieces[p + 4] > 0) {
                uploadRows(src, pieces[p], pieces[p + 3], pieces[p + 1], pieces[p + 2], pieces[p + 3], pieces[p + 4]);
            }
        }
    }

    /** Releases what a subclass holds beyond blocks and staging; called once, when this closes. */
    void closeDevice() {
    }

    abstract void copyBytes(long srcAddress, long dstAddress, long bytes);

    abstract void copyRows(long srcAddress, long srcPitch, long dstAddress, long dstPitch, long widthBytes, long height);

    abstract void downloadBytes(long srcAddress, MemorySegment dst, long dstOffset, long bytes);

    abstract void synchronizeDevice();

    /** The address of a zero-filled host buffer of {@code bytes} > 0 for staging. */
    abstract long allocateStagingBlock(long bytes);

    abstract void freeStagingBlock(long address);

    abstract MemoryInfo createMemoryInfo();

    // ---- DeviceMemory ----

    @Override
    public final String device() {
        return device;
    }

    @Override
    public final synchronized long allocate(long bytes) {
        checkOpen();
        KvqException.require(bytes > 0, "allocate needs more than 0 bytes");
        long address = allocateBlock(bytes);
        blocks.put(address, bytes);
        bytesAllocated += bytes;
        peakBytesAllocated = Math.max(peakBytesAllocated, bytesAllocated);
        return address;
    }

    @Override
    public final synchronized void free(long address) {
        checkOpen();
        Long bytes = blocks.remove(address);
        if (bytes == null) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "0x" + Long.toHexString(address) + " is not a block of "
                    + this);
        }
        bytesAllocated -= bytes;
        freeBlock(address);
    }

    @Override
    public final synchronized void upload(MemorySegment src, long srcOffset, long dstAddress, long bytes) {
        checkOpen();
        checkHostRange(src, srcOffset, bytes);
        checkBlockRange(dstAddress, bytes);
        if (bytes > 0) {
            uploadBytes(src, srcOffset, dstAddress, bytes);
        }
    }

    @Override
    public final synchronized void upload2d(MemorySegment src, long srcOffset, long srcPitch, long dstAddress,
                                            long dstPitch, long widthBytes, long height) {
        if (noRows(srcPitch, dstPitch, widthBytes, height)) {
            return;
        }
        checkHostRange(src, srcOffset, extent(srcPitch, widthBytes, height));
        checkBlockRange(dstAddress, extent(dstPitch, widthBytes, height));
        uploadRows(src, srcOffset, srcPitch, dstAddress, dstPitch, widthBytes, height);
    }

    @Override
    public final synchronized void uploadBatch(MemorySegment src, long[] pieces, int count) {
        checkOpen();
        if (count < 0 || (long) count * WORDS_PER_PIECE > pieces.length) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, count + " pieces do not fit a table of " + pieces.length
                    + " longs");
        }
        int moving = 0;
        for (int i = 0; i < count; i++) {
            int p = i * WORDS_PER_PIECE;
            long width = pieces[p + 3];
            long height = pieces[p + 4];
            if (!noRows(width, pieces[p + 2], width, height)) {
                checkHostRange(src, pieces[p], extent(width, width, height));
                checkBlockRange(pieces[p + 1], extent(pieces[p + 2], width, height));
                moving++;
            }
        }
        if (moving > 0) {
            uploadPieces(src, pieces, count);
        }
    }

    @Override
    public final synchronized void copy(long srcAddress, long dstAddress, long bytes) {
        checkOpen();
        checkBlockRange(srcAddress, bytes);
        checkBlockRange(dstAddress, bytes);
        KvqException.require(srcAddress + bytes <= dstAddress || dstAddress + bytes <= srcAddress,
                "copy ranges overlap");
        if (bytes > 0) {
            copyBytes(srcAddress, dstAddress, bytes);
        }
    }

    @Override
    public final synchronized void copy2d(long srcAddress, long srcPitch, long dstAddress, long dstPitch,
                                          long widthBytes, long height) {
        if (noRows(srcPitch, dstPitch, widthBytes, height)) {
            return;
        }
        long srcExtent = extent(srcPitch, widthBytes, height);
        long dstExtent = extent(dstPitch, widthBytes, height);
        checkBlockRange(srcAddress, srcExtent);
        checkBlockRange(dstAddress, dstExtent);
        KvqException.require(srcAddress + srcExtent <= dstAddress || dstAddress + dstExtent <= srcAddress,
                "copy regions overlap");
        copyRows(srcAddress, srcPitch, dstAddress, dstPitch, widthBytes, height);
    }

    @Override
    public final synchronized void download(long srcAddress, MemorySegment dst, long dstOffset, long bytes) {
        checkOpen();
        KvqException.require(!dst.isReadOnly(), "download needs a writable segment");
        checkBlockRange(srcAddress, bytes);
        checkHostRange(dst, dstOffset, bytes);
        if (bytes > 0) {
            downloadBytes(srcAddress, dst, dstOffset, bytes);
        }
    }

    @Override
    public final synchronized void synchronize() {
        checkOpen();
        synchronizeDevice();
    }

    @Override
    public final synchronized long bytesAllocated() {
        return bytesAllocated;
    }

    @Override
    public final synchronized long peakBytesAllocated() {
        return peakBytesAllocated;
    }

    @Override
    public final synchronized MemoryInfo memoryInfo() {
        checkOpen();
        if (memoryInfo == null) {
            memoryInfo = createMemoryInfo(); // made on first use: needs ONNX Runtime loaded, moving bytes does not
        }
        return memoryInfo;
    }

    @Override
    public final synchronized MemorySegment allocateStaging(long bytes) {
        checkOpen();
        KvqException.require(bytes > 0, "allocateStaging needs more than 0 bytes");
        if (staging == null) {
            staging = Arena.ofShared();
        }
        long address = allocateStagingBlock(bytes);
        stagingBlocks.put(address, bytes);
        // The segment dies with the arena: after close, using it fails instead of touching freed memory.
        return MemorySegment.ofAddress(address).reinterpret(bytes, staging, freed -> freeStagingBlock(address));
    }

    @Override
    public final synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            closeDevice();
            stagingBlocks.clear();
            if (staging != null) {
                staging.close();
            }
            for (Map.Entry<Long, Long> block : blocks.entrySet()) {
                freeBlock(block.getKey());
            }
        } finally {
            blocks.clear();
            bytesAllocated = 0;
            if (memoryInfo != null) {
                memoryInfo.close();
            }
        }
    }

    @Override
    public String toString() {
        return getClass().getSimpleName() + "(" + device + ")";
    }

    final synchronized void checkOpen() {
        if (closed) {
            throw new KvqException(ErrorCode.CLOSED, this + " is closed");
        }
    }

    /** Whether {@code segment} lies inside one staging buffer of this memory. */
    final synchronized boolean isStaging(MemorySegment segment) {
        if (!segment.isNative()) {
            return false;
        }
        Map.Entry<Long, Long> block = stagingBlocks.floorEntry(segment.address());
        return block != null && segment.address() - block.getKey() <= block.getValue() - segment.byteSize();
    }

    /** Throws unless this is open and the range lies inside one of its blocks. */
    final synchronized void checkInsideBlock(long address, long bytes) {
        checkOpen();
        checkBlockRange(address, bytes);
    }

    // ---- checks ----

    /**
     * Checks a 2D transfer's shape (this open, sizes not negative, rows within both pitches); true if it moves nothing.
     * Checks on the transfer path build their messages only on failure: they run for every piece of every step.
     */
    private boolean noRows(long srcPitch, long dstPitch, long widthBytes, long height) {
        checkOpen();
        if (widthBytes < 0 || height < 0) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "width and height must be >= 0, were " + widthBytes
                    + " and " + height);
        }
        if (srcPitch < widthBytes || dstPitch < widthBytes) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "pitches (" + srcPitch + ", " + dstPitch
                    + ") must be at least the row width " + widthBytes);
        }
        return widthBytes == 0 || height == 0;
    }

    /** Bytes from a 2D region's first byte to its last, plus one. */
    private static long extent(long pitch, long widthBytes, long height) {
        return Math.addExact(Math.multiplyExact(pitch, height - 1), widthBytes);
    }

    private static void checkHostRange(MemorySegment segment, long offset, long bytes) {
        if (offset < 0 || bytes < 0 || offset > segment.byteSize() - bytes) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "host range [" + offset + ", +" + bytes
                    + ") is outside a segment of " + segment.byteSize() + " bytes");
        }
    }

    /** The range must lie inside one block this object holds. */
    private void checkBlockRange(long address, long bytes) {
        KvqException.require(bytes >= 0, "byte count must be >= 0");
        Map.Entry<Long, Long> block = blocks.floorEntry(address);
        boolean inside = block != null && address - block.getKey() <= block.getValue() - bytes;
        if (!inside) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "range 0x" + Long.toHexString(address) + " +" + bytes
                    + " is not inside a block of " + this);
        }
    }
}
