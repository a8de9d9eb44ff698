package dev.kvq.runtime.onnx.nativeapi;

import ai.onnxruntime.OrtSession;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import java.lang.invoke.VarHandle;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * kvq's attention operators ({@link AttentionSpec}) registered with ONNX Runtime as custom operators, through the C
 * API's {@code OrtCustomOp}: a struct of function pointers that ONNX Runtime calls to learn an operator's inputs and
 * outputs and to run it. Each pointer is an upcall stub into this class; every operator shares the stubs, which find
 * their operator by the struct's address. On the CUDA provider an operator launches kvq's kernel ({@link
 * AttentionKernel}) on the stream ONNX Runtime gives it; on the CPU it computes in Java ({@link AttentionCpu}).
 *
 * <p>The struct is declared at version 16, the first whose {@code KernelComputeV2} returns a status, so a failure in
 * Java becomes an error of the run rather than a crash. Close after every session created with the options.
 */
@SuppressWarnings("restricted") // native calls are what this class is for
public final class CustomOps implements AutoCloseable {
    /** {@code OrtCustomOp.version}: 16 adds CreateKernelV2 and KernelComputeV2. */
    private static final int OP_VERSION = 16;
    private static final long OP_BYTES = 8 + 25 * ADDRESS.byteSize();
    private static final int ORT_FAIL = 1;
    private static final VarHandle OPTIONS_HANDLE = optionsHandle();
    private static final Map<Long, Operator> OPERATORS = new ConcurrentHashMap<>();
    private static final MemorySegment[] STUBS = stubs();

    private final OrtApi api = OrtApi.get();
    private final Arena arena = Arena.ofShared();
    private final List<Operator> operators = new java.util.ArrayList<>();
    private MemorySegment domain;

    private CustomOps(OrtSession.SessionOptions options, String domainName, List<AttentionSpec> specs, Device device) {
        MemorySegment handle = MemorySegment.ofAddress(nativeOptions(options));
        String provider = device.cuda() ? "CUDAExecutionProvider" : "CPUExecutionProvider";
        MemorySegment providerName = arena.allocateFrom(provider);
        domain = api.createCustomOpDomain(arena.allocateFrom(domainName));
        try {
            AttentionKernel kernel = device.cuda() ? AttentionKernel.forDevice(device.ordinal()) : null;
            for (AttentionSpec spec : specs) {
                MemorySegment op = arena.allocate(OP_BYTES, 8);
                op.set(JAVA_INT, 0, OP_VERSION);
                for (int i = 0; i < STUBS.length; i++) {
                    op.set(ADDRESS, 8 + i * ADDRESS.byteSize(), STUBS[i]);
                }
                Operator operator = new Operator(spec, arena.allocateFrom(spec.name()), providerName, kernel,
                        kernel == null ? null : kernel.functions(spec));
                operators.add(operator);
                OPERATORS.put(op.address(), operator);
                api.customOpDomainAdd(domain, op);
            }
            api.addCustomOpDomain(handle, domain);
        } catch (RuntimeException e) {
            close();
            throw e;
        }
    }

    /** Where the operators run: the CPU, or CUDA device {@code ordinal}. */
    public record Device(boolean cuda, int ordinal) {
        public static final Device CPU = new Device(false, 0);
    }

    /**
     * Adds a domain named {@code domain} holding {@code specs} to {@code options}, for sessions whose graphs use
     * them (as rewritten by {@code QuantizedPastRewriter.rewriteFused}) on {@code device}.
     */
    public static CustomOps register(OrtSession.SessionOptions options, String domain, List<AttentionSpec> specs,
                                     Device device) {
        KvqException.require(!specs.isEmpty(), "no operators to register");
        return new CustomOps(options, domain, specs, device);
    }

    @Override
    public void close() {
        if (domain == null) {
            return;
        }
        OPERATORS.values().removeIf(operators::contains);
        api.releaseCustomOpDomain(domain);
        domain = null;
        arena.close();
    }

    /** One registered operator: its spec, its native strings and, on CUDA, its kernels and the functions it launches. */
    private record Operator(AttentionSpec spec, MemorySegment name, MemorySegment provider, AttentionKernel kernel,
                            AttentionKernel.Functions functions) {
        void compute(OrtApi api, MemorySegment context) {
            int n = spec.inputCount();
            MemorySegment[] data = new MemorySegment[n];
            long[][] dims = new long[n][];
            for (int i = 0; i < n; i++) {
                MemorySegment value = api.kernelInput(context, i);
                // the GPU needs only the shapes that size the work (three C calls each, per layer and step)
                if (kernel == null || spec.shapeRead(i)) {
                    dims[i] = api.tensorShape(value);
                }
                data[i] = api.tensorData(value);
            }
            long[] outShape = dims[AttentionSpec.QUERY].clone();
            MemorySegment out = api.tensorData(api.kernelOutput(context, 0, outShape));
            if (kernel == null) {
                for (int i = 0; i < n; i++) {
                    data[i] = data[i].reinterpret(bytes(dims[i], spec.inputType(i)));
                }
                api.kernelOutput(context, 1, new long[] {0});
                AttentionCpu.compute(spec, data, dims, out.reinterpret(bytes(outShape, spec.outputType(0))));
            } else {
                AttentionKernel.Plan plan = AttentionKernel.plan(spec, dims);
                MemorySegment scratch = api.tensorData(api.kernelOutput(context, 1,
                        new long[] {plan.scratchFloats()}));
                kernel.launch(spec, functions, plan, data, out, scratch, api.kernelGpuStream(context));
            }
        }

        private static long bytes(long[] shape, TensorElementType type) {
            long n = type.byteSize();
            for (long d : shape) {
                n *= d;
            }
            return n;
        }
    }

    // ---- upcalls: ONNX Runtime calls these through the struct's pointers ----

    private static Operator operator(MemorySegment op) {
        Operator o = OPERATORS.get(op.address());
        if (o == null) {
            throw new IllegalStateException("unknown kvq operator at 0x" + Long.toHexString(op.address()));
        }
        return o;
    }

    private static MemorySegment getName(MemorySegment op) {
        return operator(op).name();
    }

    private static MemorySegment getExecutionProviderType(MemorySegment op) {
        return operator(op).provider();
    }

    private static int getInputType(MemorySegment op, long index) {
        return operator(op).spec().inputType((int) index).onnxCode();
    }

    private static long getInputTypeCount(MemorySegment op) {
        return operator(op).spec().inputCount();
    }

    private static int getOutputType(MemorySegment op, long index) {
        return operator(op).spec().outputType((int) index).onnxCode();
    }

    private static long getOutputTypeCount(MemorySegment op) {
        return 2;
    }

    private static void kernelDestroy(MemorySegment kernel) {
        // nothing was allocated per kernel
    }

    private static int required(MemorySegment op, long index) {
        return 0; // OrtCustomOpInputOutputCharacteristic.INPUT_OUTPUT_REQUIRED
    }

    private static int defaultMemory(MemorySegment op, long index) {
        return 0; // OrtMemTypeDefault: inputs where the provider computes
    }

    private static int one(MemorySegment op) {
        return 1;
    }

    private static MemorySegment createKernelV2(MemorySegment op, MemorySegment api, MemorySegment info,
                                                MemorySegment kernel) {
        // the operator's struct is its kernel: nothing is kept per session
        kernel.reinterpret(ADDRESS.byteSize()).set(ADDRESS, 0, op);
        return MemorySegment.NULL;
    }

    /** Runs the operator; anything thrown becomes a failed status, since an exception may not leave an upcall. */
    private static MemorySegment kernelComputeV2(MemorySegment kernel, MemorySegment context) {
        OrtApi api = OrtApi.get();
        try {
            operator(kernel).compute(api, context);
            return MemorySegment.NULL;
        } catch (Throwable t) {
            try {
                return api.createStatus(ORT_FAIL, "kvq attention: " + t);
            } catch (Throwable ignored) {
                return MemorySegment.NULL;
            }
        }
    }

    /**
     * The 25 function pointers of {@code OrtCustomOp}, in its order. NULL where version 16 does not read them, and for
     * CreateKernel and KernelCompute, which CreateKernelV2 and KernelComputeV2 replace there.
     */
    private static MemorySegment[] stubs() {
        MemorySegment[] s = new MemorySegment[25];
        java.util.Arrays.fill(s, MemorySegment.NULL);
        s[1] = stub("getName", FunctionDescriptor.of(ADDRESS, ADDRESS));
        s[2] = stub("getExecutionProviderType", FunctionDescriptor.of(ADDRESS, ADDRESS));
        s[3] = stub("getInputType", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
        s[4] = stub("getInputTypeCount", FunctionDescriptor.of(JAVA_LONG, ADDRESS));
        s[5] = stub("getOutputType", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
        s[6] = stub("getOutputTypeCount", FunctionDescriptor.of(JAVA_LONG, ADDRESS));
        s[8] = stub("kernelDestroy", FunctionDescriptor.ofVoid(ADDRESS));
        s[9] = stub("required", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
        s[10] = s[9];
        s[11] = stub("defaultMemory", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
        s[12] = stub("one", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        s[13] = s[12];
        s[14] = s[12];
        s[15] = s[12];
        s[16] = stub("createKernelV2", FunctionDescriptor.of(ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS));
        s[17] = stub("kernelComputeV2", FunctionDescriptor.of(ADDRESS, ADDRESS, ADDRESS));
        return s;
    }

    private static MemorySegment stub(String method, FunctionDescriptor descriptor) {
        try {
            MethodType type = descriptor.toMethodType();
            MethodHandle target = MethodHandles.lookup().findStatic(CustomOps.class, method, type);
            return Linker.nativeLinker().upcallStub(target, descriptor, Arena.global());
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("upcall " + method, e);
        }
    }

    private static long nativeOptions(OrtSession.SessionOptions options) {
        if (OPTIONS_HANDLE == null) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "this ONNX Runtime's SessionOptions has no readable "
                    + "nativeHandle field, which kvq reads to register its attention operators");
        }
        return (long) OPTIONS_HANDLE.get(options);
    }

    private static VarHandle optionsHandle() {
        try {
            return MethodHandles.privateLookupIn(OrtSession.SessionOptions.class, MethodHandles.lookup())
                    .findVarHandle(OrtSession.SessionOptions.class, "nativeHandle", long.class);
        } catch (ReflectiveOperationException | RuntimeException | IllegalAccessError e) {
            return null; // reported on registration
        }
    }
}
