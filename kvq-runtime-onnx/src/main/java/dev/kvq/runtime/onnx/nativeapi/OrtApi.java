package dev.kvq.runtime.onnx.nativeapi;

import ai.onnxruntime.OrtEnvironment;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The part of ONNX Runtime's C function table ({@code OrtApi}) that kvq calls, reached through
 * {@code OrtGetApiBase} in the native library that ONNX Runtime's Java API has already loaded, so both share one
 * runtime (sessions made in Java can be run from here).
 *
 * <p>{@code OrtApi} is a struct of function pointers; a function's slot is its position in the struct, and the
 * struct only grows between versions, so the slots below hold for every library that serves {@link #API_VERSION}.
 * Every non-null {@code OrtStatus*} becomes a {@link KvqException} ({@link ErrorCode#RUNTIME_FAILURE}) naming the
 * function, and the status is released.
 */
@SuppressWarnings("restricted") // native calls are what this class is for
final class OrtApi {
    /** The lowest version whose table holds every function used here (SynchronizeBoundInputs/Outputs came last). */
    static final int API_VERSION = 10;

    private static final String ENTRY_POINT = "OrtGetApiBase";

    // Slots of the functions used here, in OrtApi's declaration order (version 1 to 10 of the header).
    private static final int CREATE_STATUS = 0;
    private static final int GET_ERROR_CODE = 1;
    private static final int GET_ERROR_MESSAGE = 2;
    private static final int CREATE_CUSTOM_OP_DOMAIN = 26;
    private static final int CUSTOM_OP_DOMAIN_ADD = 27;
    private static final int ADD_CUSTOM_OP_DOMAIN = 28;
    private static final int CREATE_RUN_OPTIONS = 39;
    private static final int CREATE_TENSOR_WITH_DATA_AS_ORT_VALUE = 49;
    private static final int GET_TENSOR_MUTABLE_DATA = 51;
    private static final int GET_DIMENSIONS_COUNT = 61;
    private static final int GET_DIMENSIONS = 62;
    private static final int GET_TENSOR_TYPE_AND_SHAPE = 65;
    private static final int CREATE_MEMORY_INFO = 68;
    private static final int KERNEL_CONTEXT_GET_INPUT = 90;
    private static final int KERNEL_CONTEXT_GET_OUTPUT = 91;
    private static final int RELEASE_STATUS = 93;
    private static final int RELEASE_MEMORY_INFO = 94;
    private static final int RELEASE_VALUE = 96;
    private static final int RELEASE_RUN_OPTIONS = 97;
    private static final int RELEASE_TENSOR_TYPE_AND_SHAPE_INFO = 99;
    private static final int RELEASE_CUSTOM_OP_DOMAIN = 101;
    private static final int RUN_WITH_BINDING = 133;
    private static final int CREATE_IO_BINDING = 134;
    private static final int RELEASE_IO_BINDING = 135;
    private static final int BIND_INPUT = 136;
    private static final int BIND_OUTPUT = 137;
    private static final int CLEAR_BOUND_INPUTS = 141;
    private static final int CLEAR_BOUND_OUTPUTS = 142;
    private static final int KERNEL_CONTEXT_GET_GPU_COMPUTE_STREAM = 193;
    private static final int SYNCHRONIZE_BOUND_INPUTS = 202;
    private static final int SYNCHRONIZE_BOUND_OUTPUTS = 203;
    private static final int SLOTS_USED = SYNCHRONIZE_BOUND_OUTPUTS + 1;

    private static volatile OrtApi instance;

    private final String version;
    private final MethodHandle createStatus;
    private final MethodHandle getErrorCode;
    private final MethodHandle getErrorMessage;
    private final MethodHandle releaseStatus;
    private final MethodHandle createRunOptions;
    private final MethodHandle releaseRunOptions;
    private final MethodHandle createTensorWithDataAsOrtValue;
    private final MethodHandle releaseValue;
    private final MethodHandle createMemoryInfo;
    private final MethodHandle releaseMemoryInfo;
    private final MethodHandle createIoBinding;
    private final MethodHandle releaseIoBinding;
    private final MethodHandle bindInput;
    private final MethodHandle bindOutput;
    private final MethodHandle clearBoundInputs;
    private final MethodHandle clearBoundOutputs;
    private final MethodHandle synchronizeBoundInputs;
    private final MethodHandle synchronizeBoundOutputs;
    private final MethodHandle runWithBinding;
    private final MethodHandle createCustomOpDomain;
    private final MethodHandle customOpDomainAdd;
    private final MethodHandle addCustomOpDomain;
    private final MethodHandle releaseCustomOpDomain;
    private final MethodHandle kernelContextGetInput;
    private final MethodHandle kernelContextGetOutput;
    private final MethodHandle kernelContextGetGpuComputeStream;
    private final MethodHandle getTensorTypeAndShape;
    private final MethodHandle getDimensionsCount;
    private final MethodHandle getDimensions;
    private final MethodHandle releaseTensorTypeAndShapeInfo;
    private final MethodHandle getTensorMutableData;

    private OrtApi(MemorySegment table, String version) {
        this.version = version;
        createStatus = function(table, CREATE_STATUS, FunctionDescriptor.of(ADDRESS, JAVA_INT, ADDRESS));
        getErrorCode = function(table, GET_ERROR_CODE, FunctionDescriptor.of(JAVA_INT, ADDRESS));
        getErrorMessage = function(table, GET_ERROR_MESSAGE, FunctionDescriptor.of(ADDRESS, ADDRESS));
        releaseStatus = release(table, RELEASE_STATUS);
        createRunOptions = status(table, CREATE_RUN_OPTIONS, ADDRESS);
        releaseRunOptions = release(table, RELEASE_RUN_OPTIONS);
        // (info, data, data_len, shape, shape_len, element type, out)
        createTensorWithDataAsOrtValue = status(table, CREATE_TENSOR_WITH_DATA_AS_ORT_VALUE,
                ADDRESS, ADDRESS, JAVA_LONG, ADDRESS, JAVA_LONG, JAVA_INT, ADDRESS);
        releaseValue = release(table, RELEASE_VALUE);
        // (name, allocator type, device id, memory type, out)
        createMemoryInfo = status(table, CREATE_MEMORY_INFO, ADDRESS, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS);
        releaseMemoryInfo = release(table, RELEASE_MEMORY_INFO);
        createIoBinding = status(table, CREATE_IO_BINDING, ADDRESS, ADDRESS);
        releaseIoBinding = release(table, RELEASE_IO_BINDING);
        bindInput = status(table, BIND_INPUT, ADDRESS, ADDRESS, ADDRESS);
        bindOutput = status(table, BIND_OUTPUT, ADDRESS, ADDRESS, ADDRESS);
        clearBoundInputs = release(table, CLEAR_BOUND_INPUTS);
        clearBoundOutputs = release(table, CLEAR_BOUND_OUTPUTS);
        synchronizeBoundInputs = status(table, SYNCHRONIZE_BOUND_INPUTS, ADDRESS);
        synchronizeBoundOutputs = status(table, SYNCHRONIZE_BOUND_OUTPUTS, ADDRESS);
        runWithBinding = status(table, RUN_WITH_BINDING, ADDRESS, ADDRESS, ADDRESS);
        createCustomOpDomain = status(table, CREATE_CUSTOM_OP_DOMAIN, ADDRESS, ADDRESS);
        customOpDomainAdd = status(table, CUSTOM_OP_DOMAIN_ADD, ADDRESS, ADDRESS);
        addCustomOpDomain = status(table, ADD_CUSTOM_OP_DOMAIN, ADDRESS, ADDRESS);
        releaseCustomOpDomain = release(table, RELEASE_CUSTOM_OP_DOMAIN);
        // (context, index, out)
        kernelContextGetInput = status(table, KERNEL_CONTEXT_GET_INPUT, ADDRESS, JAVA_LONG, ADDRESS);
        // (context, index, dims, dim count, out)
        kernelContextGetOutput = status(table, KERNEL_CONTEXT_GET_OUTPUT, ADDRESS, JAVA_LONG, ADDRESS, JAVA_LONG,
                ADDRESS);
        kernelContextGetGpuComputeStream = status(table, KERNEL_CONTEXT_GET_GPU_COMPUTE_STREAM, ADDRESS, ADDRESS);
        getTensorTypeAndShape = status(table, GET_TENSOR_TYPE_AND_SHAPE, ADDRESS, ADDRESS);
        getDimensionsCount = status(table, GET_DIMENSIONS_COUNT, ADDRESS, ADDRESS);
        getDimensions = status(table, GET_DIMENSIONS, ADDRESS, ADDRESS, JAVA_LONG);
        releaseTensorTypeAndShapeInfo = release(table, RELEASE_TENSOR_TYPE_AND_SHAPE_INFO);
        getTensorMutableData = status(table, GET_TENSOR_MUTABLE_DATA, ADDRESS, ADDRESS);
    }

    /** The table of the ONNX Runtime that ONNX Runtime's Java API loaded; loads that library first if needed. */
    static OrtApi get() {
        OrtApi api = instance;
        if (api == null) {
            synchronized (OrtApi.class) {
                if (instance == null) {
                    instance = load();
                }
                api = instance;
            }
        }
        return api;
    }

    /** The native library's version, e.g. {@code 1.29.0}. */
    String version() {
        return version;
    }

    // ---- OrtStatus ----

    /** Makes a status as ONNX Runtime would return it; only for checking the error path. */
    MemorySegment createStatus(int code, String message) {
        try (Arena arena = Arena.ofConfined()) {
            return (MemorySegment) createStatus.invokeExact(code, arena.allocateFrom(message));
        } catch (Throwable t) {
            throw unexpected("CreateStatus", t);
        }
    }

    /** Returns normally for a null status; otherwise releases it and throws its message as a KvqException. */
    void check(String function, MemorySegment status) {
        if (status.address() == 0) {
            return;
        }
        String message;
        try {
            message = errorMessage(status);
        } finally {
            releaseStatus(status);
        }
        throw new KvqException(ErrorCode.RUNTIME_FAILURE, function + ": " + message);
    }

    /** The status's OrtErrorCode (ORT_FAIL is 1, ORT_INVALID_ARGUMENT 2, ...). */
    int errorCode(MemorySegment status) {
        try {
            return (int) getErrorCode.invokeExact(status);
        } catch (Throwable t) {
            throw unexpected("GetErrorCode", t);
        }
    }

    String errorMessage(MemorySegment status) {
        try {
            return ((MemorySegment) getErrorMessage.invokeExact(status)).reinterpret(Long.MAX_VALUE).getString(0);
        } catch (Throwable t) {
            throw unexpected("GetErrorMessage", t);
        }
    }

    void releaseStatus(MemorySegment status) {
        release(releaseStatus, status);
    }

    // ---- OrtRunOptions ----

    MemorySegment createRunOptions() {
        return out("CreateRunOptions", out -> (MemorySegment) createRunOptions.invokeExact(out));
    }

    void releaseRunOptions(MemorySegment runOptions) {
        release(releaseRunOptions, runOptions);
    }

    // ---- OrtMemoryInfo ----

    MemorySegment createMemoryInfo(MemorySegment name, int allocatorType, int deviceId, int memoryType) {
        return out("CreateMemoryInfo", out ->
                (MemorySegment) createMemoryInfo.invokeExact(name, allocatorType, deviceId, memoryType, out));
    }

    void releaseMemoryInfo(MemorySegment memoryInfo) {
        release(releaseMemoryInfo, memoryInfo);
    }

    // ---- OrtValue ----

    /** A tensor over {@code data}, which ONNX Runtime neither copies nor frees; {@code shape} is copied. */
    MemorySegment createTensorWithData(MemorySegment memoryInfo, MemorySegment data, long byteLength, long[] shape,
                                       int elementType) {
        NativeScratch scratch = NativeScratch.get();
        MemorySegment out = scratch.outPointer();
        try (Arena spill = shape.length > NativeScratch.MAX_RANK ? Arena.ofConfined() : null) {
            MemorySegment dims = spill == null ? scratch.dims(shape) : spill.allocateFrom(JAVA_LONG, shape);
            check("CreateTensorWithDataAsOrtValue", (MemorySegment) createTensorWithDataAsOrtValue.invokeExact(
                    memoryInfo, data, byteLength, dims, (long) shape.length, elementType, out));
        } catch (Throwable t) {
            throw unexpected("CreateTensorWithDataAsOrtValue", t);
        }
        return out.get(ADDRESS, 0);
    }

    void releaseValue(MemorySegment value) {
        release(releaseValue, value);
    }

    // ---- OrtIoBinding ----

    MemorySegment createIoBinding(MemorySegment session) {
        return out("CreateIoBinding", out -> (MemorySegment) createIoBinding.invokeExact(session, out));
    }

    void releaseIoBinding(MemorySegment binding) {
        release(releaseIoBinding, binding);
    }

    void bindInput(MemorySegment binding, MemorySegment name, MemorySegment value) {
        call("BindInput", () -> (MemorySegment) bindInput.invokeExact(binding, name, value));
    }

    void bindOutput(MemorySegment binding, MemorySegment name, MemorySegment value) {
        call("BindOutput", () -> (MemorySegment) bindOutput.invokeExact(binding, name, value));
    }

    void clearBoundInputs(MemorySegment binding) {
        release(clearBoundInputs, binding);
    }

    void clearBoundOutputs(MemorySegment binding) {
        release(clearBoundOutputs, binding);
    }

    void synchronizeBoundInputs(MemorySegment binding) {
        call("SynchronizeBoundInputs", () -> (MemorySegment) synchronizeBoundInputs.invokeExact(binding));
    }

    void synchronizeBoundOutputs(MemorySegment binding) {
        call("SynchronizeBoundOutputs", () -> (MemorySegment) synchronizeBoundOutputs.invokeExact(binding));
    }

    void runWithBinding(MemorySegment session, MemorySegment runOptions, MemorySegment binding) {
        call("RunWithBinding", () -> (MemorySegment) runWithBinding.invokeExact(session, runOptions, binding));
    }

    // ---- custom operators ----

    MemorySegment createCustomOpDomain(MemorySegment domain) {
        return out("CreateCustomOpDomain", out -> (MemorySegment) createCustomOpDomain.invokeExact(domain, out));
    }

    void customOpDomainAdd(MemorySegment domain, MemorySegment op) {
        call("CustomOpDomain_Add", () -> (MemorySegment) customOpDomainAdd.invokeExact(domain, op));
    }

    void addCustomOpDomain(MemorySegment sessionOptions, MemorySegment domain) {
        call("AddCustomOpDomain", () -> (MemorySegment) addCustomOpDomain.invokeExact(sessionOptions, domain));
    }

    void releaseCustomOpDomain(MemorySegment domain) {
        release(releaseCustomOpDomain, domain);
    }

    /** Input {@code index} of a running kernel (an {@code OrtValue*} ONNX Runtime owns). */
    MemorySegment kernelInput(MemorySegment context, long index) {
        return out("KernelContext_GetInput", out ->
                (MemorySegment) kernelContextGetInput.invokeExact(context, index, out));
    }

    /** Output {@code index} of a running kernel, allocated by ONNX Runtime with {@code shape}. */
    MemorySegment kernelOutput(MemorySegment context, long index, long[] shape) {
        MemorySegment dims = NativeScratch.get().dims(shape);
        return out("KernelContext_GetOutput", out ->
                (MemorySegment) kernelContextGetOutput.invokeExact(context, index, dims, (long) shape.length, out));
    }

    /** The CUDA stream a kernel of the CUDA provider must work on. */
    MemorySegment kernelGpuStream(MemorySegment context) {
        return out("KernelContext_GetGPUComputeStream", out ->
                (MemorySegment) kernelContextGetGpuComputeStream.invokeExact(context, out));
    }

    /** The shape of tensor {@code value}. */
    long[] tensorShape(MemorySegment value) {
        MemorySegment info = out("GetTensorTypeAndShape", out ->
                (MemorySegment) getTensorTypeAndShape.invokeExact(value, out));
        try {
            NativeScratch scratch = NativeScratch.get();
            MemorySegment count = scratch.outPointer();
            call("GetDimensionsCount", () -> (MemorySegment) getDimensionsCount.invokeExact(info, count));
            long rank = count.get(JAVA_LONG, 0);
            if (rank > NativeScratch.MAX_RANK) {
                throw new KvqException(ErrorCode.RUNTIME_FAILURE, "a tensor of rank " + rank);
            }
            MemorySegment dims = scratch.dims(new long[0]);
            call("GetDimensions", () -> (MemorySegment) getDimensions.invokeExact(info, dims, rank));
            return dims.asSlice(0, rank * JAVA_LONG.byteSize()).toArray(JAVA_LONG);
        } finally {
            release(releaseTensorTypeAndShapeInfo, info);
        }
    }

    /** The address of tensor {@code value}'s data (device memory for a tensor on the GPU). */
    MemorySegment tensorData(MemorySegment value) {
        return out("GetTensorMutableData", out -> (MemorySegment) getTensorMutableData.invokeExact(value, out));
    }

    // ---- calling ----

    /** A C function returning {@code OrtStatus*}, bound to its arguments. */
    @FunctionalInterface
    private interface StatusCall {
        MemorySegment invoke() throws Throwable;
    }

    /** A C function returning {@code OrtStatus*} and writing its result through the out-pointer it is given. */
    @FunctionalInterface
    private interface OutCall {
        MemorySegment invoke(MemorySegment out) throws Throwable;
    }

    /** Calls {@code function}; a failed status becomes a KvqException naming it. */
    private void call(String function, StatusCall call) {
        try {
            check(function, call.invoke());
        } catch (Throwable t) {
            throw unexpected(function, t);
        }
    }

    /** Calls {@code function} with a per-thread out-pointer and returns the pointer it wrote. */
    private MemorySegment out(String function, OutCall call) {
        MemorySegment out = NativeScratch.get().outPointer();
        call(function, () -> call.invoke(out));
        return out.get(ADDRESS, 0);
    }

    // ---- loading ----

    private static OrtApi load() {
        try {
            OrtEnvironment.getEnvironment(); // makes ONNX Runtime's Java API load its native library
        } catch (RuntimeException | LinkageError e) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "ONNX Runtime's native library could not be loaded: " + e,
                    e);
        }
        Linker linker = Linker.nativeLinker();
        MemorySegment entry = findEntryPoint();
        try {
            MemorySegment base = ((MemorySegment) linker.downcallHandle(entry, FunctionDescriptor.of(ADDRESS))
                    .invokeExact()).reinterpret(2 * ADDRESS.byteSize());
            // struct OrtApiBase { const OrtApi* (*GetApi)(uint32_t); const char* (*GetVersionString)(void); }
            MethodHandle getApi = linker.downcallHandle(base.getAtIndex(ADDRESS, 0),
                    FunctionDescriptor.of(ADDRESS, JAVA_INT));
            MethodHandle getVersionString = linker.downcallHandle(base.getAtIndex(ADDRESS, 1),
                    FunctionDescriptor.of(ADDRESS));
            String version = ((MemorySegment) getVersionString.invokeExact()).reinterpret(Long.MAX_VALUE).getString(0);
            MemorySegment table = (MemorySegment) getApi.invokeExact(API_VERSION);
            if (table.address() == 0) {
                throw new KvqException(ErrorCode.UNSUPPORTED, "ONNX Runtime " + version + " does not serve C API version "
                        + API_VERSION);
            }
            return new OrtApi(table.reinterpret(MemoryLayout.sequenceLayout(SLOTS_USED, ADDRESS).byteSize()), version);
        } catch (KvqException e) {
            throw e;
        } catch (Throwable t) {
            throw unexpected(ENTRY_POINT, t);
        }
    }

    /**
     * {@code OrtGetApiBase} of the library ONNX Runtime's Java API loaded: it loaded it with {@code System.load}, so
     * this class loader's lookup sees it; else the library by its soname (already loaded, so the same one) or in
     * {@code -Donnxruntime.native.path}.
     */
    private static MemorySegment findEntryPoint() {
        Optional<MemorySegment> found = SymbolLookup.loaderLookup().find(ENTRY_POINT);
        if (found.isPresent()) {
            return found.get();
        }
        List<String> tried = new ArrayList<>();
        tried.add("the libraries of this class loader");
        String nativePath = System.getProperty("onnxruntime.native.path");
        if (nativePath != null) {
            Path library = Path.of(nativePath).resolve(System.mapLibraryName("onnxruntime"));
            tried.add(library.toString());
            if (Files.isRegularFile(library)) {
                found = SymbolLookup.libraryLookup(library, Arena.global()).find(ENTRY_POINT);
            }
        }
        for (String name : List.of("libonnxruntime.so.1", System.mapLibraryName("onnxruntime"))) {
            if (found.isPresent()) {
                break;
            }
            tried.add(name);
            try {
                found = SymbolLookup.libraryLookup(name, Arena.global()).find(ENTRY_POINT);
            } catch (IllegalArgumentException notLoadable) {
                // try the next name
            }
        }
        return found.orElseThrow(() -> new KvqException(ErrorCode.UNSUPPORTED, "cannot find " + ENTRY_POINT
                + " of ONNX Runtime's native library in " + String.join(", ", tried)
                + "; point -Donnxruntime.native.path at the folder that holds it"));
    }

    private static MethodHandle function(MemorySegment table, int slot, FunctionDescriptor descriptor) {
        MemorySegment pointer = table.getAtIndex(ADDRESS, slot);
        if (pointer.address() == 0) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "ONNX Runtime's C API has no function in slot " + slot);
        }
        return Linker.nativeLinker().downcallHandle(pointer, descriptor);
    }

    /** A function that returns {@code OrtStatus*}. */
    private static MethodHandle status(MemorySegment table, int slot, ValueLayout... arguments) {
        return function(table, slot, FunctionDescriptor.of(ADDRESS, arguments));
    }

    /** A function {@code void f(T*)}: the Release* functions and ClearBound*. */
    private static MethodHandle release(MemorySegment table, int slot) {
        return function(table, slot, FunctionDescriptor.ofVoid(ADDRESS));
    }

    private static void release(MethodHandle function, MemorySegment handle) {
        try {
            function.invokeExact(handle);
        } catch (Throwable t) {
            throw unexpected("Release", t);
        }
    }

    /** Errors and KvqExceptions pass through; anything else a downcall could throw is a runtime failure. */
    static RuntimeException unexpected(String function, Throwable t) {
        if (t instanceof RuntimeException e) {
            return e;
        }
        if (t instanceof Error e) {
            throw e;
        }
        return new KvqException(ErrorCode.RUNTIME_FAILURE, function + ": " + t, t);
    }
}
