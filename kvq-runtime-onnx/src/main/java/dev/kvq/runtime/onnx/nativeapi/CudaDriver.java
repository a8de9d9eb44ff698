package dev.kvq.runtime.onnx.nativeapi;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;

/**
 * The functions of CUDA's driver library ({@code libcuda.so.1}, installed with the GPU's driver) that loading and
 * launching kvq's kernels takes: the runtime library has no call that loads PTX. Each returns a {@code CUresult};
 * {@link #check} turns any but {@code CUDA_SUCCESS} into a {@link KvqException} naming the call.
 */
@SuppressWarnings("restricted") // native calls are what this class is for
final class CudaDriver {
    private static final String LIBRARY = "libcuda.so.1";
    private static volatile CudaDriver instance;

    final MethodHandle init;                 // (unsigned flags)
    final MethodHandle deviceGet;            // (CUdevice* device, int ordinal)
    final MethodHandle primaryCtxRetain;     // (CUcontext* ctx, CUdevice device)
    final MethodHandle ctxSetCurrent;        // (CUcontext ctx)
    final MethodHandle moduleLoadData;       // (CUmodule* module, const void* image): PTX text, NUL-terminated
    final MethodHandle moduleGetFunction;    // (CUfunction* fn, CUmodule module, const char* name)
    final MethodHandle launchKernel;         // (fn, gridX, gridY, gridZ, blockX, blockY, blockZ, sharedBytes, stream,
                                             //  void** params, void** extra)
    private final MethodHandle getErrorString; // (CUresult, const char** text)

    private CudaDriver(SymbolLookup cuda) {
        Linker linker = Linker.nativeLinker();
        init = bind(linker, cuda, "cuInit", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
        deviceGet = bind(linker, cuda, "cuDeviceGet", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        primaryCtxRetain = bind(linker, cuda, "cuDevicePrimaryCtxRetain",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        ctxSetCurrent = bind(linker, cuda, "cuCtxSetCurrent", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        moduleLoadData = bind(linker, cuda, "cuModuleLoadData", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        moduleGetFunction = bind(linker, cuda, "cuModuleGetFunction",
                FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS));
        launchKernel = bind(linker, cuda, "cuLaunchKernel", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT,
                JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, ADDRESS));
        getErrorString = bind(linker, cuda, "cuGetErrorString", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS));
    }

    /** The driver, loaded on first use; {@link ErrorCode#UNSUPPORTED} if there is no {@code libcuda.so.1}. */
    static CudaDriver get() {
        CudaDriver driver = instance;
        if (driver == null) {
            synchronized (CudaDriver.class) {
                if (instance == null) {
                    SymbolLookup library;
                    try {
                        library = SymbolLookup.libraryLookup(LIBRARY, Arena.global());
                    } catch (IllegalArgumentException e) {
                        throw new KvqException(ErrorCode.UNSUPPORTED, "cannot load CUDA's driver library " + LIBRARY
                                + ": is the NVIDIA driver installed?");
                    }
                    CudaDriver loaded = new CudaDriver(library);
                    try {
                        loaded.check("cuInit", (int) loaded.init.invokeExact(0));
                    } catch (Throwable t) {
                        throw OrtApi.unexpected("cuInit", t);
                    }
                    instance = loaded;
                }
                driver = instance;
            }
        }
        return driver;
    }

    /** Throws unless {@code result} is {@code CUDA_SUCCESS} (0). */
    void check(String call, int result) {
        if (result != 0) {
            throw new KvqException(ErrorCode.RUNTIME_FAILURE, call + ": " + errorString(result) + " (CUresult "
                    + result + ")");
        }
    }

    private String errorString(int result) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment text = arena.allocate(ADDRESS);
            int error = (int) getErrorString.invokeExact(result, text);
            MemorySegment chars = text.get(ADDRESS, 0);
            return error != 0 || chars.address() == 0 ? "unknown CUDA error"
                    : chars.reinterpret(Long.MAX_VALUE).getString(0);
        } catch (Throwable t) {
            throw OrtApi.unexpected("cuGetErrorString", t);
        }
    }

    private static MethodHandle bind(Linker linker, SymbolLookup library, String name, FunctionDescriptor type) {
        MemorySegment symbol = library.find(name).orElseThrow(() -> new KvqException(ErrorCode.UNSUPPORTED,
                "CUDA's driver library has no " + name));
        return linker.downcallHandle(symbol, type);
    }
}
