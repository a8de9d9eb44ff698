package dev.kvq.runtime.onnx.nativeapi;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The functions of CUDA's runtime library ({@code libcudart}) that {@link CudaMemory} calls. Each returns a
 * {@code cudaError_t}; {@link #check} turns any but {@code cudaSuccess} into a {@link KvqException} that names the
 * call and says CUDA's description of the error.
 */
@SuppressWarnings("restricted") // native calls are what this class is for
final class CudaRuntime {
    /** {@code cudaMemcpyKind} values. */
    static final int HOST_TO_DEVICE = 1;
    static final int DEVICE_TO_HOST = 2;
    static final int DEVICE_TO_DEVICE = 3;

    /** Tried in this order; the CUDA execution provider of ONNX Runtime 1.2x links CUDA 12's runtime. */
    private static final List<String> LIBRARY_NAMES = List.of("libcudart.so.12", "libcudart.so.13", "libcudart.so");
    /** A path to a libcudart to load instead of searching the library path. */
    static final String LIBRARY_PROPERTY = "kvq.cudart";

    private static volatile CudaRuntime instance;

    final MethodHandle getDeviceCount;  // (int* count)
    final MethodHandle setDevice;       // (int device)
    final MethodHandle malloc;          // (void** ptr, size_t bytes)
    final MethodHandle free;            // (void* ptr)
    final MethodHandle memset;          // (void* ptr, int value, size_t bytes)
    final MethodHandle memcpy;          // (void* dst, const void* src, size_t bytes, cudaMemcpyKind)
    final MethodHandle memcpy2d;        // (void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                                        //  size_t height, cudaMemcpyKind)
    final MethodHandle memcpyAsync;     // memcpy and memcpy2d on a stream (last argument; NULL: the default stream),
    final MethodHandle memcpy2dAsync;   // returning once queued: the source must stay as it is until synchronized
    final MethodHandle memcpyHeap;      // memcpy and memcpy2d that may take Java heap segments: critical calls,
    final MethodHandle memcpy2dHeap;    // during which the garbage collector waits
    final MethodHandle memGetInfo;      // (size_t* free, size_t* total)
    final MethodHandle deviceSynchronize;
    final MethodHandle mallocHost;      // (void** ptr, size_t bytes): page-locked host memory
    final MethodHandle freeHost;        // (void* ptr)
    private final MethodHandle getErrorString; // const char* (cudaError_t)

    private CudaRuntime(SymbolLookup cudart) {
        Linker linker = Linker.nativeLinker();
        FunctionDescriptor memcpyType = FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, JAVA_LONG, JAVA_INT);
        FunctionDescriptor memcpy2dType = FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, ADDRESS, JAVA_LONG,
                JAVA_LONG, JAVA_LONG, JAVA_INT);
        getDeviceCount = bind(linker, cudart, "cudaGetDeviceCount", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        setDevice = bind(linker, cudart, "cudaSetDevice", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
        malloc = bind(linker, cudart, "cudaMalloc", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
        free = bind(linker, cudart, "cudaFree", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        memset = bind(linker, cudart, "cudaMemset", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_LONG));
        memcpy = bind(linker, cudart, "cudaMemcpy", memcpyType);
        memcpy2d = bind(linker, cudart, "cudaMemcpy2D", memcpy2dType);
        memcpyAsync = bind(linker, cudart, "cudaMemcpyAsync", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS,
                JAVA_LONG, JAVA_INT, ADDRESS));
        memcpy2dAsync = bind(linker, cudart, "cudaMemcpy2DAsync", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG,
                ADDRESS, JAVA_LONG, JAVA_LONG, JAVA_LONG, JAVA_INT, ADDRESS));
        memcpyHeap = bind(linker, cudart, "cudaMemcpy", memcpyType, Linker.Option.critical(true));
        memcpy2dHeap = bind(linker, cudart, "cudaMemcpy2D", memcpy2dType, Linker.Option.critical(true));
        memGetInfo = bind(linker, cudart, "cudaMemGetInfo", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        deviceSynchronize = bind(linker, cudart, "cudaDeviceSynchronize", FunctionDescriptor.of(JAVA_INT));
        mallocHost = bind(linker, cudart, "cudaMallocHost", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
        freeHost = bind(linker, cudart, "cudaFreeHost", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        getErrorString = bind(linker, cudart, "cudaGetErrorString", FunctionDescriptor.of(ADDRESS, JAVA_INT));
    }

    /** The runtime, loaded on first use; {@link ErrorCode#UNSUPPORTED} if no libcudart can be loaded. */
    static CudaRuntime get() {
        CudaRuntime runtime = instance;
        if (runtime == null) {
            synchronized (CudaRuntime.class) {
                if (instance == null) {
                    instance = new CudaRuntime(loadLibrary());
                }
                runtime = instance;
            }
        }
        return runtime;
    }

    /** Throws unless {@code error} is {@code cudaSuccess} (0). */
    void check(String call, int error) {
        if (error != 0) {
            throw new KvqException(ErrorCode.RUNTIME_FAILURE, call + ": " + errorString(error) + " (cudaError "
                    + error + ")");
        }
    }

    String errorString(int error) {
        try {
            MemorySegment text = (MemorySegment) getErrorString.invokeExact(error);
            return text.address() == 0 ? "unknown CUDA error" : text.reinterpret(Long.MAX_VALUE).getString(0);
        } catch (Throwable t) {
            throw OrtApi.unexpected("cudaGetErrorString", t);
        }
    }

    private static SymbolLookup loadLibrary() {
        String override = System.getProperty(LIBRARY_PROPERTY);
        List<String> names = override != null ? List.of(override) : LIBRARY_NAMES;
        List<String> failures = new ArrayList<>();
        for (String name : names) {
            try {
                return name.contains("/") ? SymbolLookup.libraryLookup(Path.of(name), Arena.global())
                        : SymbolLookup.libraryLookup(name, Arena.global());
            } catch (IllegalArgumentException e) {
                failures.add(name);
            }
        }
        throw new KvqException(ErrorCode.UNSUPPORTED, "cannot load CUDA's runtime library (tried "
                + String.join(", ", failures) + "): CUDA 12's libcudart.so.12 (or CUDA 13's libcudart.so.13) must be "
                + "on LD_LIBRARY_PATH, or name the library with -D" + LIBRARY_PROPERTY + "=/path/to/libcudart.so");
    }

    private static MethodHandle bind(Linker linker, SymbolLookup library, String name, FunctionDescriptor type,
                                     Linker.Option... options) {
        MemorySegment symbol = library.find(name).orElseThrow(() -> new KvqException(ErrorCode.UNSUPPORTED,
                "CUDA's runtime library has no " + name));
        return linker.downcallHandle(symbol, type, options);
    }
}
