package dev.kvq.runtime.onnx;

import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.spi.DeviceMemory;
import dev.kvq.generate.spi.UploadBatch;
import dev.kvq.generate.spi.QuantizedDecoder;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.QuantizedStep;
import dev.kvq.generate.spi.RuntimeOptions;
import dev.kvq.generate.spi.Step;
import dev.kvq.generate.spi.StoredLayer;
import dev.kvq.generate.spi.StoredRun;
import dev.kvq.runtime.onnx.graph.QuantizedPastRewriter;
import dev.kvq.runtime.onnx.nativeapi.CustomOps;
import dev.kvq.runtime.onnx.nativeapi.IoBinding;
import dev.kvq.runtime.onnx.nativeapi.MemoryInfo;
import dev.kvq.runtime.onnx.nativeapi.NativeString;
import dev.kvq.runtime.onnx.nativeapi.NativeTensor;
import dev.kvq.runtime.onnx.nativeapi.TensorElementType;
import dev.kvq.tensor.KvView;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.OptionalLong;

/**
 * The model rewritten for one {@link QuantizedPastLayout}: its own session, whose graph reads kvq's quantized history
 * where the runtime runs and returns only the new tokens' K/V. Inputs are bound with ONNX Runtime's IoBinding (C API
 * through FFM): the history's tensors lie over device memory this decoder owns, token inputs and outputs over host
 * memory, so a step uploads the token inputs and downloads the new K/V and the logits, nothing else.
 */
final class OnnxQuantizedDecoder implements QuantizedDecoder, AutoCloseable {
    private static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG_UNALIGNED;

    /**
     * Whether layers attend through kvq's operator over the codes (system property {@code kvq.onnx.fusedAttention}):
     * {@code auto} (the default) on CUDA only, {@code true} on the CPU too, {@code false} never (every layer then
     * dequantizes its history before the model's own attention). On the CPU the dequantizing graph is the default
     * because it computes bit for bit what placement host computes; kvq's operator sums in another order, which
     * moves perplexity by up to 1e-2 relative where a backend re-solves its parameters per token (hqq), and
     * attention speed matters on the GPU. Read when a decoder is made.
     */
    static boolean fusedAttention(boolean cuda) {
        String value = System.getProperty(FUSED_ATTENTION, "auto");
        return switch (value) {
            case "auto" -> cuda;
            case "true" -> true;
            case "false" -> false;
            default -> throw KvqException.config("-D" + FUSED_ATTENTION + " must be auto, true or false, was '"
                    + value + "'");
        };
    }

    static final String FUSED_ATTENTION = "kvq.onnx.fusedAttention";
    private static final System.Logger LOG = System.getLogger(OnnxQuantizedDecoder.class.getName());
    /** The most new tokens per sequence that a step runs through kvq's attention operator. */
    static final int FUSED_MOST_TOKENS = 16;
    /**
     * Tokens a run keeps side by side per sequence and head where layers attend over the codes: one warp's tokens of
     * the CUDA kernel, so that its lanes read one stretch of codes and parameters
     * (docs/results/gpu/fused/kernel-v5-blocks).
     */
    static final int FUSED_TOKEN_BLOCK = 32;
    private static final java.util.concurrent.atomic.AtomicLong DOMAINS = new java.util.concurrent.atomic.AtomicLong();

    /** The layout kvq asked for, and the one this decoder reads: the same with rows in token blocks when fused. */
    private final QuantizedPastLayout requested;
    private final QuantizedPastLayout layout;
    private final OrtSession session;
    private final CustomOps operators;
    /**
     * Where layers attend through kvq's operator: the same model dequantizing before attention, for steps of more
     * than {@link #FUSED_MOST_TOKENS} tokens per sequence (prefill chunks), whose many queries the model's own
     * MatMuls serve better than the operator's one block per query; else null. Its inputs and outputs are the fused
     * model's, so either session runs on the same bound memory.
     */
    private final OrtSession prefillSession;
    private final IoBinding prefillBinding;
    /** The binding of the step in progress. */
    private IoBinding active;
    private final IoBinding binding;
    private final dev.kvq.runtime.onnx.nativeapi.DeviceMemory device;
    private final Memory memory;
    private final MemoryInfo host = MemoryInfo.cpu();
    private final Arena arena = Arena.ofShared();
    private final boolean halfKv;
    private final boolean logitsHalf;
    private final boolean hasPositionIds;
    private final boolean hasUseCacheBranch;
    private final int layers;
    private final int heads;
    private final int dim;
    private final int vocab;
    /** Per past tensor, in {@link QuantizedStep} order: name, element type, run (null for residuals). */
    private final List<PastInput> pastInputs = new ArrayList<>();
    private final NativeString[] newKeyNames;
    private final NativeString[] newValueNames;
    private final NativeString inputIds = NativeString.of("input_ids");
    private final NativeString newMask = NativeString.of(QuantizedPastRewriter.NEW_MASK);
    private final NativeString quantizedTokens = NativeString.of(QuantizedPastRewriter.QUANTIZED_TOKENS);
    private final NativeString residualTokens = NativeString.of(QuantizedPastRewriter.RESIDUAL_TOKENS);
    private final NativeString positionIds = NativeString.of("position_ids");
    private final NativeString useCacheBranch = NativeString.of("use_cache_branch");
    private final NativeString logitsName = NativeString.of("logits");
    private final List<NativeTensor> stepTensors = new ArrayList<>();
    private MemorySegment tokenInputs = MemorySegment.NULL;
    private MemorySegment logits = MemorySegment.NULL;
    private final MemorySegment[] newKeys;
    private final MemorySegment[] newValues;
    /** Per thread (sequences' new tokens may be read in parallel), float32 scratch per layer and kind. */
    private final ThreadLocal<MemorySegment[]> wideScratch;
    private boolean closed;

    OnnxQuantizedDecoder(OnnxDecoder base, Path modelFile, QuantizedPastLayout requested, OrtEnvironment env,
                         OrtSession.SessionOptions options) {
        this.requested = requested;
        var config = base.config();
        this.layers = config.layers();
        this.heads = config.kvHeads();
        this.dim = config.headDim();
        this.vocab = config.vocabSize();
        this.halfKv = base.halfKv();
        this.logitsHalf = base.logitsHalf();
        this.hasPositionIds = base.hasPositionIds();
        this.hasUseCacheBranch = base.hasUseCacheBranch();
        CustomOps.Device where = operatorDevice(base.device());
        boolean attendsOverCodes = fusedAttention(where.cuda());
        QuantizedPastLayout layout = attendsOverCodes ? requested.withTokenBlock(FUSED_TOKEN_BLOCK) : requested;
        this.layout = layout;
        // the model dequantizing before attention: every step's graph without the operator, prefill's with it
        byte[] dequantizing;
        byte[] model = null;
        CustomOps operators = null;
        int fused = 0;
        if (attendsOverCodes) {
            String domain = "dev.kvq.attention." + DOMAINS.incrementAndGet();
            QuantizedPastRewriter.Fused rewritten = QuantizedPastRewriter.rewriteFused(modelFile, layout,
                    config.attentionHeads(), domain, where.cuda());
            dequantizing = rewritten.dequantizing();
            if (!rewritten.operators().isEmpty()) {
                try {
                    operators = CustomOps.register(options, domain, rewritten.operators(), where);
                    model = rewritten.model();
                    fused = rewritten.operators().size();
                } catch (KvqException e) {
                    if (e.code() != ErrorCode.UNSUPPORTED) {
                        throw e;
                    }
                    // no kernel on this machine (an old driver, no libcuda): the dequantizing graph still runs
                    LOG.log(System.Logger.Level.WARNING, () -> "kvq's attention operator is not available ("
                            + e.getMessage() + "); every layer dequantizes its history before attention");
                }
            }
        } else {
            dequantizing = QuantizedPastRewriter.rewrite(modelFile, layout);
        }
        int dequantizingLayers = config.layers() - fused;
        if (operators != null && dequantizingLayers > 0) {
            LOG.log(System.Logger.Level.WARNING, () -> dequantizingLayers + " of " + config.layers()
                    + " layers of " + modelFile + " dequantize their history before attention (slower): kvq's"
                    + " attention operator needs the Concat, head repetition, MatMul, Softmax, MatMul shape of an"
                    + " export and, on CUDA, head sizes 32, 64 or 128");
        }
        this.operators = operators;
        OrtSession main = null;
        OrtSession prefill = null;
        try {
            QuantizedPastRewriter.useModelFolder(options, modelFile);
            main = env.createSession(model == null ? dequantizing : model, options);
            if (model != null) {
                prefill = env.createSession(dequantizing, options);
            }
        } catch (OrtException | RuntimeException e) {
            // the operators' domain must outlive every session that uses it
            closeQuietly(main, e);
            if (operators != null) {
                operators.close();
            }
            throw new KvqException(ErrorCode.MODEL_INVALID, "ONNX Runtime cannot load " + modelFile + " rewritten to "
                    + "read a quantized cache: " + e.getMessage(), e);
        }
        this.session = main;
        this.prefillSession = prefill;
        this.binding = IoBinding.create(session);
        this.prefillBinding = prefill == null ? null : IoBinding.create(prefill);
        this.active = binding;
        this.device = dev.kvq.runtime.onnx.nativeapi.DeviceMemory.forDevice(base.device());
        this.memory = new Memory(device);
        for (int l = 0; l < layers; l++) {
            StoredLayer sl = layout.layers().get(l);
            for (String kind : new String[] {"key", "value"}) {
                List<StoredRun> runs = kind.equals("key") ? sl.keys() : sl.values();
                for (int j = 0; j < runs.size(); j++) {
                    StoredRun run = runs.get(j);
                    TensorElementType codes = run.raw() ? (run.bits() == 16 ? TensorElementType.FLOAT16
                            : TensorElementType.FLOAT) : TensorElementType.UINT8;
                    TensorElementType params = run.halfParams() ? TensorElementType.FLOAT16 : TensorElementType.FLOAT;
                    pastInputs.add(new PastInput(QuantizedPastLayout.codesName(l, kind, j), codes, run, 0));
                    pastInputs.add(run.raw() ? null : new PastInput(QuantizedPastLayout.scalesName(l, kind, j), params,
                            run, 1));
                    pastInputs.add(run.raw() ? null : new PastInput(QuantizedPastLayout.zerosName(l, kind, j), params,
                            run, 2));
                }
            }
            if (sl.residualCapacity() > 0) {
                TensorElementType kv = halfKv ? TensorElementType.FLOAT16 : TensorElementType.FLOAT;
                pastInputs.add(new PastInput(QuantizedPastLayout.residualName(l, "key"), kv, null, 3));
                pastInputs.add(new PastInput(QuantizedPastLayout.residualName(l, "value"), kv, null, 3));
            }
        }
        newKeyNames = new NativeString[layers];
        newValueNames = new NativeString[layers];
        newKeys = new MemorySegment[layers];
        newValues = new MemorySegment[layers];
        wideScratch = ThreadLocal.withInitial(() -> {
            MemorySegment[] scratch = new MemorySegment[2 * layers];
            java.util.Arrays.fill(scratch, MemorySegment.NULL);
            return scratch;
        });
        for (int l = 0; l < layers; l++) {
            newKeyNames[l] = NativeString.of(QuantizedPastLayout.newName(l, "key"));
            newValueNames[l] = NativeString.of(QuantizedPastLayout.newName(l, "value"));
            newKeys[l] = MemorySegment.NULL;
            newValues[l] = MemorySegment.NULL;
        }
    }

    @Override
    public QuantizedPastLayout layout() {
        return layout;
    }

    /** The layout this decoder was made for ({@link #layout()} may keep its rows in token blocks). */
    QuantizedPastLayout requested() {
        return requested;
    }

    @Override
    public boolean halfKv() {
        return halfKv;
    }

    @Override
    public DeviceMemory memory() {
        return memory;
    }

    @Override
    public Step forward(QuantizedStep in) {
        checkOpen();
        releaseStep();
        int b = in.batch();
        int t = in.tokens();
        try {
            // the last step's bindings go with its tensors; the other binding was cleared when it was last left
            active.clearInputs();
            active.clearOutputs();
            active = prefillBinding != null && t > FUSED_MOST_TOKENS ? prefillBinding : binding;
            // token inputs: host memory, which ONNX Runtime copies to the device as part of the run
            long tokenBytes = (3L * b * t + 2L * b + 1) * Long.BYTES;
            tokenInputs = grow(tokenInputs, tokenBytes);
            long at = 0;
            at = bindLongs(inputIds, in.inputIds(), at, b, t);
            at = bindLongs(newMask, in.newTokenMask(), at, b, t);
            at = bindLongs(quantizedTokens, in.quantizedTokens(), at, b);
            if (in.residualLength() > 0) {
                at = bindLongs(residualTokens, in.residualTokens(), at, b);
            }
            if (hasPositionIds) {
                bindLongs(positionIds, in.positionIds(), at, b, t);
            }
            if (hasUseCacheBranch) {
                MemorySegment flag = tokenInputs.asSlice(tokenBytes - Long.BYTES, 1);
                flag.set(ValueLayout.JAVA_BYTE, 0, (byte) 1);
                // Optimum's merged decoders take use_cache_branch as bool [1], not a scalar
                bind(useCacheBranch, NativeTensor.of(host, flag, TensorElementType.BOOL, 1));
            }
            bindPast(in);
            // outputs: host memory kvq reads directly
            int kvBytes = halfKv ? 2 : 4;
            long newBytes = (long) b * heads * t * dim * kvBytes;
            for (int l = 0; l < layers; l++) {
                newKeys[l] = grow(newKeys[l], newBytes);
                newValues[l] = grow(newValues[l], newBytes);
                TensorElementType kv = halfKv ? TensorElementType.FLOAT16 : TensorElementType.FLOAT;
                bindOutput(newKeyNames[l], NativeTensor.of(host, newKeys[l].asSlice(0, newBytes), kv, b, heads, t, dim));
                bindOutput(newValueNames[l], NativeTensor.of(host, newValues[l].asSlice(0, newBytes), kv, b, heads, t,
                        dim));
            }
            long logitBytes = (long) b * t * vocab * (logitsHalf ? 2 : 4);
            logits = grow(logits, logitBytes);
            bindOutput(logitsName, NativeTensor.of(host, logits.asSlice(0, logitBytes),
                    logitsHalf ? TensorElementType.FLOAT16 : TensorElementType.FLOAT, b, t, vocab));
            device.synchronize();
            active.run();
            active.synchronizeOutputs();
            return new QuantizedStepResult(b, t);
        } catch (KvqException e) {
            throw new KvqException(ErrorCode.RUNTIME_FAILURE, "ONNX Runtime failed on a step of " + b + "x" + t
                    + " tokens over " + in.quantizedLength() + " quantized and " + in.residualLength()
                    + " residual positions: " + e.getMessage(), e);
        }
    }

    /** Binds every run's codes, scales and zeros ({@code [T, B, heads, ...]}) and the residuals at their addresses. */
    private void bindPast(QuantizedStep in) {
        long[] past = in.past();
        int b = in.batch();
        int t = in.quantizedLength();
        for (int i = 0; i < pastInputs.size(); i++) {
            PastInput p = pastInputs.get(i);
            if (p == null) {
                continue;
            }
            long[] shape;
            if (p.tensor == 3) {
                shape = new long[] {b, heads, in.residualLength(), dim};
            } else if (p.tensor == 0) {
                shape = p.run.raw() ? new long[] {t, b, p.run.heads(), dim}
                        : new long[] {t, b, p.run.heads(), p.run.rowBytes(dim)};
            } else if (p.run.axis() == StoredRun.GroupAxis.TOKEN) {
                shape = new long[] {t, b, p.run.heads(), p.run.paramsPerRow(dim)};
            } else {
                shape = new long[] {t / p.run.groupSize(), b, p.run.heads(), dim};
            }
            long bytes = NativeTensor.byteSize(p.type, shape);
            bind(p.name, NativeTensor.of(device.memoryInfo(), past[i], bytes, p.type, shape));
        }
    }

    /** Copies {@code values} into the token input buffer at {@code offset}, binds them, returns the next offset. */
    private long bindLongs(NativeString name, long[] values, long offset, long... shape) {
        int count = 1;
        for (long d : shape) {
            count *= (int) d;
        }
        MemorySegment slice = tokenInputs.asSlice(offset, (long) count * Long.BYTES);
        MemorySegment.copy(values, 0, slice, I64, 0, count);
        bind(name, NativeTensor.of(host, slice, TensorElementType.INT64, shape));
        return offset + (long) count * Long.BYTES;
    }

    private void bind(NativeString name, NativeTensor tensor) {
        stepTensors.add(tensor);
        active.bindInput(name, tensor);
    }

    private void bindOutput(NativeString name, NativeTensor tensor) {
        stepTensors.add(tensor);
        active.bindOutput(name, tensor);
    }

    private MemorySegment grow(MemorySegment segment, long bytes) {
        if (segment.byteSize() >= bytes) {
            return segment;
        }
        return arena.allocate(Math.max(bytes, segment.byteSize() * 3 / 2), 64);
    }

    private void releaseStep() {
        for (NativeTensor t : stepTensors) {
            t.close();
        }
        stepTensors.clear();
    }

    private void checkOpen() {
        if (closed) {
            throw new KvqException(ErrorCode.CLOSED, "this decoder was closed");
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        releaseStep();
        binding.close();
        if (prefillBinding != null) {
            prefillBinding.close();
        }
        device.close();
        host.close();
        try {
            session.close();
            if (prefillSession != null) {
                prefillSession.close();
            }
        } catch (OrtException e) {
            throw new KvqException(ErrorCode.RUNTIME_FAILURE, "closing the ONNX session failed: " + e.getMessage(), e);
        } finally {
            if (operators != null) {
                operators.close();
            }
            arena.close();
        }
    }

    private static void closeQuietly(OrtSession session, Exception cause) {
        if (session == null) {
            return;
        }
        try {
            session.close();
        } catch (OrtException | RuntimeException e) {
            cause.addSuppressed(e);
        }
    }

    private static CustomOps.Device operatorDevice(String device) {
        RuntimeOptions options = RuntimeOptions.on(device);
        return options.cuda() ? new CustomOps.Device(true, options.cudaDevice()) : CustomOps.Device.CPU;
    }

    private record PastInput(NativeString name, TensorElementType type, StoredRun run, int tensor) {
        PastInput(String name, TensorElementType type, StoredRun run, int tensor) {
            this(NativeString.of(name), type, run, tensor);
        }
    }

    /** The new tokens' K/V and logits of the last step, read from host buffers the run wrote. */
    private final class QuantizedStepResult implements Step {
        private final int batch;
        private final int tokens;

        QuantizedStepResult(int batch, int tokens) {
            this.batch = batch;
            this.tokens = tokens;
        }

        @Override
        public void logits(int b, int t, float[] out) {
            HostOutputs.logits(logits, ((long) b * tokens + t) * vocab, vocab, logitsHalf, out);
        }

        @Override
        public KvView newKeys(int layer, int b) {
            return view(newKeys[layer], 2 * layer, b);
        }

        @Override
        public KvView newValues(int layer, int b) {
            return view(newValues[layer], 2 * layer + 1, b);
        }

        @Override
        public boolean concurrentViews() {
            return true;
        }

        private KvView view(MemorySegment src, int slot, int b) {
            long perSequence = (long) heads * tokens * dim;
            if (!halfKv) {
                return new KvView(src, b * perSequence, heads, tokens, dim, (long) tokens * dim);
            }
            // float16 K/V: widen this sequence's tokens into float32 scratch of the calling thread
            MemorySegment[] wide = wideScratch.get();
            wide[slot] = grow(wide[slot], perSequence * Float.BYTES);
            MemorySegment dst = wide[slot];
            HostOutputs.widen(src, b * perSequence, dst, 0, perSequence);
            return KvView.contiguous(dst, heads, tokens, dim);
        }
    }

    /** kvq's view of the runtime's memory: the native binding under the generation SPI. */
    private static final class Memory implements DeviceMemory {
        private final dev.kvq.runtime.onnx.nativeapi.DeviceMemory inner;

        Memory(dev.kvq.runtime.onnx.nativeapi.DeviceMemory inner) {
            this.inner = inner;
        }

        @Override
        public long allocate(long bytes, Element element) {
            // ONNX Runtime binds tensors of any type over any bytes
            return inner.allocate(bytes);
        }

        @Override
        public void free(long address) {
            inner.free(address);
        }

        @Override
        public void upload(MemorySegment src, long srcOffset, long dst, long bytes) {
            inner.upload(src, srcOffset, dst, bytes);
        }

        @Override
        public void upload2d(MemorySegment src, long srcOffset, long srcPitch, long dst, long dstPitch, long width,
                             long height) {
            inner.upload2d(src, srcOffset, srcPitch, dst, dstPitch, width, height);
        }

        @Override
        public void uploadBatch(MemorySegment src, UploadBatch batch) {
            // both tables hold a piece as (source offset, destination, destination pitch, width, rows)
            inner.uploadBatch(src, batch.words(), batch.size());
        }

        @Override
        public void copy(long src, long dst, long bytes) {
            inner.copy(src, dst, bytes);
        }

        @Override
        public void copy2d(long src, long srcPitch, long dst, long dstPitch, long width, long height) {
            inner.copy2d(src, srcPitch, dst, dstPitch, width, height);
        }

        @Override
        public void synchronize() {
            inner.synchronize();
        }

        @Override
        public MemorySegment staging(long bytes) {
            return inner.allocateStaging(bytes);
        }

        @Override
        public void freeStaging(MemorySegment staging) {
            // staging lives until the memory closes; the store asks rarely (it grows geometrically)
        }

        @Override
        public long bytesAllocated() {
            return inner.bytesAllocated();
        }

        @Override
        public long peakBytesAllocated() {
            return inner.peakBytesAllocated();
        }

        @Override
        public OptionalLong deviceBytesInUse() {
            Optional<long[]> info = inner.deviceMemoryInfo();
            return info.isPresent() ? OptionalLong.of(info.get()[1] - info.get()[0]) : OptionalLong.empty();
        }
    }
}
