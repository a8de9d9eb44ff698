package dev.kvq.runtime.onnx.nativeapi;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.Optional;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Plain native host memory (C's {@code calloc} and {@code free}), for sessions on the CPU execution provider:
 * tensors over it are read in place. Its blocks can also be read as segments with {@link #segment(long, long)}.
 */
@SuppressWarnings("restricted") // native calls are what this class is for
public final class HostMemory extends AbstractDeviceMemory {
    private static final MethodHandle CALLOC;
    private static final MethodHandle FREE;

    static {
        Linker linker = Linker.nativeLinker();
        CALLOC = linker.downcallHandle(linker.defaultLookup().findOrThrow("calloc"),
                FunctionDescriptor.of(ADDRESS, JAVA_LONG, JAVA_LONG));
        FREE = linker.downcallHandle(linker.defaultLookup().findOrThrow("free"), FunctionDescriptor.ofVoid(ADDRESS));
    }

    public HostMemory() {
        super("cpu");
    }

    /**
     * The bytes at {@code address}, which must lie inside a block of this memory; the segment is valid until that
     * block is freed.
     */
    public MemorySegment segment(long address, long bytes) {
        checkInsideBlock(address, bytes);
        return at(address, bytes);
    }

    @Override
    long allocateBlock(long bytes) {
        return calloc(bytes);
    }

    @Override
    void freeBlock(long address) {
        try {
            FREE.invokeExact(MemorySegment.ofAddress(address));
        } catch (Throwable t) {
            throw OrtApi.unexpected("free", t);
        }
    }

    @Override
    void uploadBytes(MemorySegment src, long srcOffset, long dstAddress, long bytes) {
        MemorySegment.copy(src, srcOffset, at(dstAddress, bytes), 0, bytes);
    }

    @Override
    void uploadRows(MemorySegment src, long srcOffset, long srcPitch, long dstAddress, long dstPitch, long widthBytes,
                    long height) {
        MemorySegment dst = at(dstAddress, dstPitch * (height - 1) + widthBytes);
        for (long row = 0; row < height; row++) {
            MemorySegment.copy(src, srcOffset + row * srcPitch, dst, row * dstPitch, widthBytes);
        }
    }

    @Override
    void copyBytes(long srcAddress, long dstAddress, long bytes) {
        MemorySegment.copy(at(srcAddress, bytes), 0, at(dstAddress, bytes), 0, bytes);
    }

    @Override
    void copyRows(long srcAddress, long srcPitch, long dstAddress, long dstPitch, long widthBytes, long height) {
        MemorySegment src = at(srcAddress, srcPitch * (height - 1) + widthBytes);
        MemorySegment dst = at(dstAddress, dstPitch * (height - 1) + widthBytes);
        for (long row = 0; row < height; row++) {
            MemorySegment.copy(src, row * srcPitch, dst, row * dstPitch, widthBytes);
        }
    }

    @Override
    void downloadBytes(long srcAddress, MemorySegment dst, long dstOffset, long bytes) {
        MemorySegment.copy(at(srcAddress, bytes), 0, dst, dstOffset, bytes);
    }

    @Override
    void synchronizeDevice() {
        // host copies are done when they return
    }

    @Override
    long allocateStagingBlock(long bytes) {
        return calloc(bytes);
    }

    @Override
    void freeStagingBlock(long address) {
        freeBlock(address);
    }

    @Override
    MemoryInfo createMemoryInfo() {
        return MemoryInfo.cpu();
    }

    @Override
    public Optional<long[]> deviceMemoryInfo() {
        checkOpen();
        return Optional.empty();
    }

    private static long calloc(long bytes) {
        MemorySegment block;
        try {
            block = (MemorySegment) CALLOC.invokeExact(1L, bytes);
        } catch (Throwable t) {
            throw OrtApi.unexpected("calloc", t);
        }
        if (block.address() == 0) {
            throw new KvqException(ErrorCode.RUNTIME_FAILURE, "calloc: out of host memory for " + bytes + " bytes");
        }
        return block.address();
    }

    private static MemorySegment at(long address, long bytes) {
        return MemorySegment.ofAddress(address).reinterpret(bytes);
    }
}
