package dev.kvq.runtime.onnx.nativeapi;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Memory of one CUDA device, through CUDA's runtime library (CUDA 12's {@code libcudart.so.12} on the library
 * path, or {@code -Dkvq.cudart=/path}), for sessions on the CUDA execution provider: tensors over it stay on the
 * GPU. Transfers use the default stream; see {@link DeviceMemory} for when they are done.
 */
@SuppressWarnings("restricted") // native calls are what this class is for
public final class CudaMemory extends AbstractDeviceMemory {
    /** {@code false} turns batched uploads' kernel off (one copy per piece), to compare the two. */
    public static final String SCATTER_PROPERTY = "kvq.cuda.scatter";
    private static final System.Logger LOG = System.getLogger(CudaMemory.class.getName());
    private static final long TABLE_BLOCK = 64 * 1024;

    private final CudaRuntime cuda;
    private final int deviceId;
    /** Loaded on the first batch; null until then, or when it cannot be (the batch then copies piece by piece). */
    private ScatterKernel scatter;
    private boolean scatterTried;
    /** Page-locked tables of pieces: a launch reads its table until synchronized, so each takes fresh space. */
    private MemorySegment table = MemorySegment.NULL;
    private long tableUsed;
    private final List<MemorySegment> retiredTables = new ArrayList<>();

    /** Memory of device {@code deviceId}; {@link ErrorCode#UNSUPPORTED} if CUDA or that device is not there. */
    public CudaMemory(int deviceId) {
        super("cuda:" + deviceId);
        KvqException.require(deviceId >= 0, "CUDA device id must be >= 0, was " + deviceId);
        this.cuda = CudaRuntime.get();
        this.deviceId = deviceId;
        int devices = deviceCount();
        if (deviceId >= devices) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "CUDA device " + deviceId + " does not exist; this machine"
                    + " has " + devices);
        }
        selectDevice();
    }

    public int deviceId() {
        return deviceId;
    }

    /** Calls a CUDA allocator of the form {@code cudaError_t f(void** out, size_t bytes)}; returns the address. */
    private long allocateWith(String name, MethodHandle allocator, long bytes) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment out = arena.allocate(ADDRESS);
            cuda.check(name + "(" + bytes + ")", (int) allocator.invokeExact(out, bytes));
            return out.get(ADDRESS, 0).address();
        } catch (Throwable t) {
            throw OrtApi.unexpected(name, t);
        }
    }

    @Override
    long allocateBlock(long bytes) {
        selectDevice();
        long address = allocateWith("cudaMalloc", cuda.malloc, bytes);
        try {
            cuda.check("cudaMemset", (int) cuda.memset.invokeExact(MemorySegment.ofAddress(address), 0, bytes));
        } catch (Throwable t) {
            freeBlock(address);
            throw OrtApi.unexpected("cudaMemset", t);
        }
        return address;
    }

    @Override
    void freeBlock(long address) {
        selectDevice();
        call("cudaFree", cuda.free, MemorySegment.ofAddress(address));
    }

    @Override
    void uploadBytes(MemorySegment src, long srcOffset, long dstAddress, long bytes) {
        selectDevice();
        try {
            if (src.isNative()) {
                // queued on the default stream: a step's many small uploads do not each wait for the copy engine
                cuda.check("cudaMemcpyAsync (host to device)", (int) cuda.memcpyAsync.invokeExact(
                        MemorySegment.ofAddress(dstAddress), src.asSlice(srcOffset, bytes), bytes,
                        CudaRuntime.HOST_TO_DEVICE, MemorySegment.NULL));
            } else {
                cuda.check("cudaMemcpy (host to device)", (int) cuda.memcpyHeap.invokeExact(
                        MemorySegment.ofAddress(dstAddress), src.asSlice(srcOffset, bytes), bytes,
                        CudaRuntime.HOST_TO_DEVICE));
            }
        } catch (Throwable t) {
            throw OrtApi.unexpected("cudaMemcpy", t);
        }
    }

    @Override
    void uploadRows(MemorySegment src, long srcOffset, long srcPitch, long dstAddress, long dstPitch, long widthBytes,
                    long height) {
        selectDevice();
        MemorySegment rows = src.asSlice(srcOffset, srcPitch * (height - 1) + widthBytes);
        try {
            if (src.isNative()) {
                cuda.check("cudaMemcpy2DAsync (host to device)", (int) cuda.memcpy2dAsync.invokeExact(
                        MemorySegment.ofAddress(dstAddress), dstPitch, rows, srcPitch, widthBytes, height,
                        CudaRuntime.HOST_TO_DEVICE, MemorySegment.NULL));
            } else {
                cuda.check("cudaMemcpy2D (host to device)", (int) cuda.memcpy2dHeap.invokeExact(
                        MemorySegment.ofAddress(dstAddress), dstPitch, rows, srcPitch, widthBytes, height,
                        CudaRuntime.HOST_TO_DEVICE));
            }
        } catch (Throwable t) {
            throw OrtApi.unexpected("cudaMemcpy2D", t);
        }
    }

    /** Pieces of staging memory take one launch of {@link ScatterKernel}; others go one copy each. */
    @Override
    void uploadPieces(MemorySegment src, long[] pieces, int count) {
        ScatterKernel kernel = isStaging(src) ? scatterKernel() : null;
        if (kernel == null) {
            super.uploadPieces(src, pieces, count);
            return;
        }
        MemorySegment rows = tableSpace((long) count * ScatterKernel.WORDS_PER_PIECE * Long.BYTES);
        long base = src.address();
        for (int i = 0; i < count; i++) {
            int p = i * WORDS_PER_PIECE;
            long at = (long) i * ScatterKernel.WORDS_PER_PIECE * Long.BYTES;
            rows.set(JAVA_LONG, at, base + pieces[p]);
            rows.set(JAVA_LONG, at + 8, pieces[p + 1]);
            rows.set(JAVA_LONG, at + 16, pieces[p + 2]);
            rows.set(JAVA_LONG, at + 24, pieces[p + 3]);
            rows.set(JAVA_LONG, at + 32, pieces[p + 4]);
            rows.set(JAVA_LONG, at + 40, pieces[p + 3]); // source rows lie one after the other
        }
        selectDevice();
        kernel.launch(rows, count);
    }

    private ScatterKernel scatterKernel() {
        if (!scatterTried) {
            scatterTried = true;
            if (!"false".equals(System.getProperty(SCATTER_PROPERTY))) {
                try {
                    selectDevice();
                    scatter = new ScatterKernel(deviceId);
                } catch (KvqException e) {
                    LOG.log(System.Logger.Level.WARNING, "uploads go one copy per piece: " + e.getMessage());
                }
            }
        }
        return scatter;
    }

    /** {@code bytes} of page-locked memory that no launch since the last synchronization reads. */
    private MemorySegment tableSpace(long bytes) {
        if (table.byteSize() - tableUsed < bytes) {
            if (table.byteSize() > 0) {
                retiredTables.add(table);
            }
            long size = Math.max(TABLE_BLOCK, Math.max(bytes, table.byteSize() * 2));
            table = MemorySegment.ofAddress(allocateStagingBlock(size)).reinterpret(size);
            tableUsed = 0;
        }
        MemorySegment slice = table.asSlice(tableUsed, bytes);
        tableUsed += (bytes + 63) & ~63L;
        return slice;
    }

    @Override
    void closeDevice() {
        if (table.byteSize() > 0) {
            synchronizeDevice(); // a launch may still read its table; this also frees the retired ones
            freeStagingBlock(table.address());
            table = MemorySegment.NULL;
        }
        if (scatter != null) {
            scatter.close();
        }
    }

    @Override
    void copyBytes(long srcAddress, long dstAddress, long bytes) {
        selectDevice();
        try {
            cuda.check("cudaMemcpy (device to device)", (int) cuda.memcpy.invokeExact(
                    MemorySegment.ofAddress(dstAddress), MemorySegment.ofAddress(srcAddress), bytes,
                    CudaRuntime.DEVICE_TO_DEVICE));
        } catch (Throwable t) {
            throw OrtApi.unexpected("cudaMemcpy", t);
        }
    }

    @Override
    void copyRows(long srcAddress, long srcPitch, long dstAddress, long dstPitch, long widthBytes, long height) {
        selectDevice();
        try {
            cuda.check("cudaMemcpy2D (device to device)", (int) cuda.memcpy2d.invokeExact(
                    MemorySegment.ofAddress(dstAddress), dstPitch, MemorySegment.ofAddress(srcAddress), srcPitch,
                    widthBytes, height, CudaRuntime.DEVICE_TO_DEVICE));
        } catch (Throwable t) {
            throw OrtApi.unexpected("cudaMemcpy2D", t);
        }
    }

    @Override
    void downloadBytes(long srcAddress, MemorySegment dst, long dstOffset, long bytes) {
        selectDevice();
        MethodHandle memcpy = dst.isNative() ? cuda.memcpy : cuda.memcpyHeap;
        try {
            cuda.check("cudaMemcpy (device to host)", (int) memcpy.invokeExact(dst.asSlice(dstOffset, bytes),
                    MemorySegment.ofAddress(srcAddress), bytes, CudaRuntime.DEVICE_TO_HOST));
        } catch (Throwable t) {
            throw OrtApi.unexpected("cudaMemcpy", t);
        }
    }

    @Override
    void synchronizeDevice() {
        selectDevice();
        try {
            cuda.check("cudaDeviceSynchronize", (int) cuda.deviceSynchronize.invokeExact());
        } catch (Throwable t) {
            throw OrtApi.unexpected("cudaDeviceSynchronize", t);
        }
        // every launch is done: its tables may be written again
        tableUsed = 0;
        for (MemorySegment retired : retiredTables) {
            freeStagingBlock(retired.address());
        }
        retiredTables.clear();
    }

    @Override
    long allocateStagingBlock(long bytes) {
        selectDevice();
        long address = allocateWith("cudaMallocHost", cuda.mallocHost, bytes);
        MemorySegment.ofAddress(address).reinterpret(bytes).fill((byte) 0);
        return address;
    }

    @Override
    void freeStagingBlock(long address) {
        call("cudaFreeHost", cuda.freeHost, MemorySegment.ofAddress(address));
    }

    @Override
    MemoryInfo createMemoryInfo() {
        return MemoryInfo.cuda(deviceId);
    }

    @Override
    public Optional<long[]> deviceMemoryInfo() {
        checkOpen();
        synchronized (this) {
            selectDevice();
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment free = arena.allocate(JAVA_LONG);
                MemorySegment total = arena.allocate(JAVA_LONG);
                cuda.check("cudaMemGetInfo", (int) cuda.memGetInfo.invokeExact(free, total));
                return Optional.of(new long[] {free.get(JAVA_LONG, 0), total.get(JAVA_LONG, 0)});
            } catch (Throwable t) {
                throw OrtApi.unexpected("cudaMemGetInfo", t);
            }
        }
    }

    /** The current device is a per-thread setting of CUDA's runtime, so every call sets it first. */
    private void selectDevice() {
        try {
            cuda.check("cudaSetDevice(" + deviceId + ")", (int) cuda.setDevice.invokeExact(deviceId));
        } catch (Throwable t) {
            throw OrtApi.unexpected("cudaSetDevice", t);
        }
    }

    private int deviceCount() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment count = arena.allocate(JAVA_INT);
            int error = (int) cuda.getDeviceCount.invokeExact(count);
            if (error != 0) {
                throw new KvqException(ErrorCode.UNSUPPORTED, "cudaGetDeviceCount: " + cuda.errorString(error)
                        + " (cudaError " + error + "); is there a GPU and its driver?");
            }
            return count.get(JAVA_INT, 0);
        } catch (Throwable t) {
            throw OrtApi.unexpected("cudaGetDeviceCount", t);
        }
    }

    private void call(String name, MethodHandle function, MemorySegment pointer) {
        try {
            cuda.check(name, (int) function.invokeExact(pointer));
        } catch (Throwable t) {
            throw OrtApi.unexpected(name, t);
        }
    }
}
