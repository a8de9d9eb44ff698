package dev.kvq.runtime.onnx.nativeapi;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * Where a tensor's memory lives, as ONNX Runtime needs to know it ({@code OrtMemoryInfo}): host memory, or the
 * memory of one CUDA device. Close it after the tensors made with it.
 */
public final class MemoryInfo implements AutoCloseable {
    // OrtAllocatorType and OrtMemType of the C API.
    private static final int ORT_DEVICE_ALLOCATOR = 0;
    private static final int ORT_ARENA_ALLOCATOR = 1;
    private static final int ORT_MEM_TYPE_DEFAULT = 0;

    private final String name;
    private final int deviceId;
    private MemorySegment handle;

    private MemoryInfo(String name, int allocatorType, int deviceId) {
        this.name = name;
        this.deviceId = deviceId;
        try (Arena arena = Arena.ofConfined()) {
            handle = OrtApi.get().createMemoryInfo(arena.allocateFrom(name), allocatorType, deviceId,
                    ORT_MEM_TYPE_DEFAULT);
        }
    }

    /**
     * Host memory read by the CPU execution provider. ONNX Runtime matches bound tensors to a provider by device,
     * not by allocator, so the allocator type named here (the arena, as ONNX Runtime's own CPU tensors say) does
     * not matter to IoBinding.
     */
    public static MemoryInfo cpu() {
        return new MemoryInfo("Cpu", ORT_ARENA_ALLOCATOR, 0);
    }

    /** Memory of CUDA device {@code deviceId}, as the CUDA execution provider allocates it. */
    public static MemoryInfo cuda(int deviceId) {
        KvqException.require(deviceId >= 0, "CUDA device id must be >= 0, was " + deviceId);
        return new MemoryInfo("Cuda", ORT_DEVICE_ALLOCATOR, deviceId);
    }

    /** ONNX Runtime's name of the memory: {@code Cpu} or {@code Cuda}. */
    public String name() {
        return name;
    }

    public int deviceId() {
        return deviceId;
    }

    public boolean isCuda() {
        return name.equals("Cuda");
    }

    synchronized MemorySegment handle() {
        if (handle == null) {
            throw new KvqException(ErrorCode.CLOSED, "memory info " + this + " is closed");
        }
        return handle;
    }

    /** Releases the native object; tensors made with it must be closed first. Closing twice does nothing. */
    @Override
    public synchronized void close() {
        if (handle != null) {
            OrtApi.get().releaseMemoryInfo(handle);
            handle = null;
        }
    }

    @Override
    public String toString() {
        return isCuda() ? "cuda:" + deviceId : "cpu";
    }
}
