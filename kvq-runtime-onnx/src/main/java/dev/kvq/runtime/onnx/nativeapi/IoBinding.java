package dev.kvq.runtime.onnx.nativeapi;

import ai.onnxruntime.OrtSession;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.HashMap;
import java.util.Map;

/**
 * ONNX Runtime's IoBinding for a session of its Java API: inputs and outputs bound to {@link NativeTensor}s over
 * memory kvq owns, so a run reads and writes that memory in place and a decode step moves only its new data.
 *
 * <p>Bindings persist across runs: bind the tensors whose shape or address changed, and {@link #run()} again.
 * When a tensor's memory is where the session's provider works (host memory for the CPU provider, that GPU's memory
 * for the CUDA provider) nothing is copied: a change to the memory between runs is seen by the next run. Memory
 * elsewhere is copied by ONNX Runtime when bound, so later changes need a new bind. Not thread-safe; close it
 * before the session.
 */
public final class IoBinding implements AutoCloseable {
    // ONNX Runtime's Java module is an automatic one, so all its packages are open to this module.
    private static final VarHandle SESSION_HANDLE = sessionField("nativeHandle", long.class);
    private static final VarHandle SESSION_CLOSED = sessionField("closed", boolean.class);

    private final OrtApi api = OrtApi.get();
    private final OrtSession session;
    private final MemorySegment sessionHandle;
    private final Map<String, NativeString> names = new HashMap<>();
    private MemorySegment binding;
    private MemorySegment runOptions;

    private IoBinding(OrtSession session) {
        this.session = session;
        this.sessionHandle = MemorySegment.ofAddress(nativeSession(session));
        this.binding = api.createIoBinding(sessionHandle);
        try {
            this.runOptions = api.createRunOptions(); // older runtimes require non-null run options here
        } catch (RuntimeException e) {
            api.releaseIoBinding(binding);
            throw e;
        }
    }

    /** A binding for {@code session}, which must stay open until this is closed. */
    public static IoBinding create(OrtSession session) {
        KvqException.require(session != null, "session must not be null");
        return new IoBinding(session);
    }

    /** Binds input {@code name} to {@code tensor}, replacing an earlier binding of that name. */
    public void bindInput(String name, NativeTensor tensor) {
        bindInput(nameOf(name), tensor);
    }

    public void bindInput(NativeString name, NativeTensor tensor) {
        api.bindInput(binding(), name.segment(), tensor.handle());
    }

    /** Binds output {@code name} to {@code tensor}: the run writes that output into the tensor's memory. */
    public void bindOutput(String name, NativeTensor tensor) {
        bindOutput(nameOf(name), tensor);
    }

    public void bindOutput(NativeString name, NativeTensor tensor) {
        api.bindOutput(binding(), name.segment(), tensor.handle());
    }

    public void clearInputs() {
        api.clearBoundInputs(binding());
    }

    public void clearOutputs() {
        api.clearBoundOutputs(binding());
    }

    /** Waits until inputs written on another stream are visible to the session's provider (a no-op on the CPU). */
    public void synchronizeInputs() {
        api.synchronizeBoundInputs(binding());
    }

    /** Waits until the outputs of the last run are written (a no-op on the CPU). */
    public void synchronizeOutputs() {
        api.synchronizeBoundOutputs(binding());
    }

    /** Runs the session on the bound inputs and outputs. */
    public void run() {
        MemorySegment bound = binding();
        if ((boolean) SESSION_CLOSED.get(session)) {
            throw new KvqException(ErrorCode.CLOSED, "the session of this IoBinding is closed");
        }
        api.runWithBinding(sessionHandle, runOptions, bound);
    }

    /** Releases the binding (not the session, nor the bound tensors). Closing twice does nothing. */
    @Override
    public void close() {
        if (binding != null) {
            api.releaseRunOptions(runOptions);
            api.releaseIoBinding(binding);
            binding = null;
            runOptions = null;
        }
    }

    private MemorySegment binding() {
        if (binding == null) {
            throw new KvqException(ErrorCode.CLOSED, "IoBinding is closed");
        }
        return binding;
    }

    private NativeString nameOf(String name) {
        NativeString encoded = names.get(name);
        if (encoded == null) {
            encoded = NativeString.of(name);
            names.put(name, encoded);
        }
        return encoded;
    }

    private static long nativeSession(OrtSession session) {
        if (SESSION_HANDLE == null || SESSION_CLOSED == null) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "this ONNX Runtime's OrtSession has no readable "
                    + "nativeHandle and closed fields, which kvq reads to run the session through the C API");
        }
        if ((boolean) SESSION_CLOSED.get(session)) {
            throw new KvqException(ErrorCode.CLOSED, "cannot bind a closed session");
        }
        long handle = (long) SESSION_HANDLE.get(session);
        if (handle == 0) {
            throw new KvqException(ErrorCode.RUNTIME_FAILURE, "the session has no native handle");
        }
        return handle;
    }

    private static VarHandle sessionField(String name, Class<?> type) {
        try {
            return MethodHandles.privateLookupIn(OrtSession.class, MethodHandles.lookup())
                    .findVarHandle(OrtSession.class, name, type);
        } catch (ReflectiveOperationException | RuntimeException | IllegalAccessError e) {
            return null; // reported when a binding is made
        }
    }
}
