package dev.kvq.generate.device;

import dev.kvq.generate.spi.DeviceMemory;
import dev.kvq.generate.spi.UploadBatch;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.HashMap;
import java.util.Map;

/**
 * Device memory that is host memory, for testing the store without a runtime. Uploads are queued and read their
 * source only at the next {@link #synchronize()} (or copy or free, which follow them in order), as CUDA's copies on a
 * stream may: a store that wrote over a queued upload's source would mirror the wrong bytes.
 */
final class ArenaMemory implements DeviceMemory, AutoCloseable {
    private final Arena arena = Arena.ofShared();
    private final java.util.List<Runnable> queued = new java.util.ArrayList<>();
    private final Map<Long, MemorySegment> live = new HashMap<>();
    private long allocated;
    private long peak;
    long uploads;
    long batches;
    long synchronizations;

    @Override
    public long allocate(long bytes, Element element) {
        MemorySegment s = arena.allocate(bytes, 64);
        live.put(s.address(), s);
        allocated += bytes;
        peak = Math.max(peak, allocated);
        return s.address();
    }

    @Override
    public void free(long address) {
        drain();
        MemorySegment s = live.remove(address);
        allocated -= s.byteSize();
    }

    MemorySegment at(long address, long bytes) {
        return MemorySegment.ofAddress(address).reinterpret(bytes);
    }

    @Override
    public void upload(MemorySegment src, long srcOffset, long dst, long bytes) {
        uploads++;
        queued.add(() -> MemorySegment.copy(src, srcOffset, at(dst, bytes), 0, bytes));
    }

    @Override
    public void upload2d(MemorySegment src, long srcOffset, long srcPitch, long dst, long dstPitch, long width,
                         long height) {
        uploads++;
        queued.add(() -> {
            for (long r = 0; r < height; r++) {
                MemorySegment.copy(src, srcOffset + r * srcPitch, at(dst + r * dstPitch, width), 0, width);
            }
        });
    }

    @Override
    public void uploadBatch(MemorySegment src, UploadBatch batch) {
        batches++;
        DeviceMemory.super.uploadBatch(src, batch);
    }

    private void drain() {
        queued.forEach(Runnable::run);
        queued.clear();
    }

    @Override
    public void copy(long src, long dst, long bytes) {
        drain();
        MemorySegment.copy(at(src, bytes), 0, at(dst, bytes), 0, bytes);
    }

    @Override
    public void copy2d(long src, long srcPitch, long dst, long dstPitch, long width, long height) {
        drain();
        for (long r = 0; r < height; r++) {
            MemorySegment.copy(at(src + r * srcPitch, width), 0, at(dst + r * dstPitch, width), 0, width);
        }
    }

    @Override
    public void synchronize() {
        synchronizations++;
        drain();
    }

    @Override
    public MemorySegment staging(long bytes) {
        return arena.allocate(bytes, 64);
    }

    @Override
    public void freeStaging(MemorySegment staging) {
    }

    @Override
    public long bytesAllocated() {
        return allocated;
    }

    @Override
    public long peakBytesAllocated() {
        return peak;
    }

    @Override
    public void close() {
        arena.close();
    }
}
