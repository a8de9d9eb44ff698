package dev.kvq.runtime.djl;

import ai.djl.Device;
import ai.djl.MalformedModelException;
import ai.djl.Model;
import ai.djl.engine.Engine;
import ai.djl.engine.EngineException;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.index.NDIndex;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.engine.PtNDManager;
import ai.djl.pytorch.engine.PtSymbolBlock;
import ai.djl.pytorch.jni.IValue;
import ai.djl.pytorch.jni.JniUtils;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.model.ModelConfig;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.spi.DensePast;
import dev.kvq.generate.spi.PastBuffers;
import dev.kvq.generate.spi.QuantizedDecoder;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.RuntimeOptions;
import dev.kvq.generate.spi.Step;
import dev.kvq.generate.spi.StepInput;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.LongBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * A TorchScript decoder ({@code forward(input_ids, attention_mask, position_ids, past: List[Tensor]) -> (logits,
 * present)}, past and present holding key0, value0, key1, ... of {@code [B, H, P(+T), D]}) run by DJL's PyTorch
 * engine through its IValue API. Past K/V come from kvq's caches in direct buffers; each step's arrays live in a
 * sub-manager closed at the next step.
 */
final class DjlDecoder implements Decoder {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private final ModelConfig config;
    private final String name;
    private final Path file;
    private Model model;
    private PtSymbolBlock block;
    private final Device device;
    private final boolean halfKv;
    private final int layers;
    private final int heads;
    private final int dim;
    private final int vocab;
    private ByteBuffer[] pastKeys;
    private ByteBuffer[] pastValues;
    private DensePast past;
    private NDManager stepManager;
    private float[] logits = new float[0];
    /** The new tokens' keys and values of the last step, layer by layer (keys of layer l at 2l). */
    private final float[][] newKv;
    /** Each layer tensor of {@link #newKv} starts at 0 of its own array. */
    private final long[] layerStarts;
    private DjlQuantizedDecoder quantized;
    private boolean closed;

    private DjlDecoder(ModelConfig config, String name, Path file, Model model, Device device) {
        this.config = config;
        this.name = name;
        this.file = file;
        this.model = model;
        this.block = (PtSymbolBlock) model.getBlock();
        this.device = device;
        this.halfKv = parametersAreHalf(block, (PtNDManager) model.getNDManager());
        this.layers = config.layers();
        this.heads = config.kvHeads();
        this.dim = config.headDim();
        this.vocab = config.vocabSize();
        this.pastKeys = new ByteBuffer[layers];
        this.pastValues = new ByteBuffer[layers];
        this.newKv = new float[2 * layers][];
        this.layerStarts = new long[2 * layers];
        for (int l = 0; l < layers; l++) {
            pastKeys[l] = ByteBuffer.allocateDirect(0);
            pastValues[l] = ByteBuffer.allocateDirect(0);
        }
    }

    static DjlDecoder open(ModelDir dir, RuntimeOptions options) {
        Path file = dir.require("model.torchscript.pt", "the TorchScript decoder of kvq's contract");
        Engine engine;
        try {
            engine = Engine.getEngine("PyTorch");
        } catch (EngineException | IllegalArgumentException e) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "DJL cannot start its PyTorch engine: " + e.getMessage()
                    + "; kvq-runtime-djl needs ai.djl.pytorch:pytorch-native-cpu (or -cu124) and pytorch-jni on the path, "
                    + "and runs offline (-Dai.djl.offline=true)", e);
        }
        Device device = options.cuda() ? Device.gpu(options.cudaDevice()) : Device.cpu();
        if (options.cuda() && engine.getGpuCount() <= options.cudaDevice()) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "device " + options.device() + " needs a CUDA build of libtorch "
                    + "and a GPU, but DJL's PyTorch engine (" + engine.getVersion() + ") sees " + engine.getGpuCount()
                    + " GPUs; stage pytorch-native-cu124 (tools/stage-djl-cuda.sh) or use --device cpu");
        }
        Model model = load(dir.name(), file, device, file.toString());
        DjlDecoder decoder = new DjlDecoder(dir.config(), dir.name(), file, model, device);
        decoder.checkContract();
        return decoder;
    }

    private static Model load(String name, Path file, Device device, String shownAs) {
        Model model = Model.newInstance(name, device, "PyTorch");
        try {
            model.load(file.getParent(), file.getFileName().toString());
            return model;
        } catch (IOException | MalformedModelException | RuntimeException e) {
            model.close();
            throw new KvqException(ErrorCode.MODEL_INVALID, "DJL cannot load " + shownAs + ": " + e.getMessage(), e);
        }
    }

    /** Whether the model's weights, and so its K/V, are float16. */
    private static boolean parametersAreHalf(PtSymbolBlock block, PtNDManager manager) {
        ai.djl.ndarray.NDList params = JniUtils.moduleGetParams(block, manager);
        try {
            return !params.isEmpty() && params.get(0).getDataType() == DataType.FLOAT16;
        } finally {
            params.close();
        }
    }

    @Override
    public boolean halfKv() {
        return halfKv;
    }

    /**
     * The model with {@link QuantizedPastProgram}'s entry, loaded once in place of the original (its {@code forward}
     * is unchanged, so host placement keeps working on it); the history lives in tensors on the model's device.
     */
    @Override
    public QuantizedDecoder quantized(QuantizedPastLayout layout) {
        checkOpen();
        if (layout.tokenBlock() != 1) {
            // the program decodes token-major rows; kvq asks for blocks only of its own attention operator
            throw new KvqException(ErrorCode.UNSUPPORTED, "DJL reads a quantized history one token per row, not in "
                    + "blocks of " + layout.tokenBlock() + " tokens; give it the layout of the cache as configured");
        }
        if (quantized == null || !quantized.layout().equals(layout)) {
            if (quantized != null) {
                quantized.close();
                quantized = null;
            }
            ensureQuantizedEntry();
            quantized = new DjlQuantizedDecoder(block, (PtNDManager) model.getNDManager(), layout, halfKv, vocab);
        }
        return quantized;
    }

    private void ensureQuantizedEntry() {
        if (QuantizedPastProgram.has(block)) {
            return;
        }
        Path dir = null;
        Path rewritten = null;
        try {
            dir = Files.createTempDirectory("kvq-djl-");
            rewritten = dir.resolve(file.getFileName());
            QuantizedPastProgram.write(file, layers, rewritten);
            Model next = load(name, rewritten, device, file + " with kvq's quantized-past entry");
            PtSymbolBlock nextBlock = (PtSymbolBlock) next.getBlock();
            if (!QuantizedPastProgram.has(nextBlock)) {
                next.close();
                throw new KvqException(ErrorCode.MODEL_INVALID, file + " with kvq's quantized-past entry lacks it "
                        + "after loading");
            }
            if (stepManager != null) {
                stepManager.close();
                stepManager = null;
            }
            model.close();
            model = next;
            block = nextBlock;
        } catch (IOException e) {
            throw new KvqException(ErrorCode.IO, "cannot write a temporary copy of " + file + ": " + e.getMessage(), e);
        } finally {
            try {
                if (rewritten != null) {
                    Files.deleteIfExists(rewritten);
                }
                if (dir != null) {
                    Files.deleteIfExists(dir);
                }
            } catch (IOException e) {
                // a leftover temporary file is harmless
            }
        }
    }

    /** One tiny forward to check the model's past list and outputs against config.json. */
    private void checkContract() {
        try {
            PastBuffers p = past(1, 0);
            Step s = forward(new StepInput(1, 1, 0, new long[] {0}, new long[] {1}, new long[] {0}, p));
            s.newKeys(0, 0);
        } catch (KvqException e) {
            close();
            throw new KvqException(ErrorCode.MODEL_INVALID, "model.torchscript.pt does not follow kvq's TorchScript "
                    + "contract for a model with config.json's " + layers + " layers, " + heads + " KV heads and head_dim "
                    + dim + ": " + e.getMessage(), e);
        }
    }

    @Override
    public ModelConfig config() {
        return config;
    }

    @Override
    public String device() {
        return device.isGpu() ? "cuda:" + device.getDeviceId() : "cpu";
    }

    @Override
    public PastBuffers past(int batch, int pastLength) {
        checkOpen();
        long bytes = (long) batch * heads * pastLength * dim * Float.BYTES;
        MemorySegment[] keys = new MemorySegment[layers];
        MemorySegment[] values = new MemorySegment[layers];
        for (int l = 0; l < layers; l++) {
            pastKeys[l] = ensure(pastKeys[l], bytes);
            pastValues[l] = ensure(pastValues[l], bytes);
            keys[l] = MemorySegment.ofBuffer(pastKeys[l]);
            values[l] = MemorySegment.ofBuffer(pastValues[l]);
        }
        past = new DensePast(keys, values, batch, pastLength, heads, dim);
        return past;
    }

    private static ByteBuffer ensure(ByteBuffer b, long bytes) {
        if (b.capacity() >= bytes) {
            return b;
        }
        return ByteBuffer.allocateDirect(Math.toIntExact(Math.max(bytes, (long) (b.capacity() * 1.5))))
                .order(ByteOrder.nativeOrder());
    }

    @Override
    public Step forward(StepInput in) {
        checkOpen();
        plainExecutor();
        if (in.past() != past) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "forward needs the buffers of the last past() call");
        }
        if (stepManager != null) {
            stepManager.close();
        }
        stepManager = model.getNDManager().newSubManager(device);
        int b = in.batch();
        int t = in.tokens();
        int p = in.pastLength();
        PtNDManager m = (PtNDManager) stepManager;
        IValue[] args = new IValue[4];
        IValue result = null;
        try {
            args[0] = IValue.from((PtNDArray) m.create(LongBuffer.wrap(in.inputIds()), new Shape(b, t), DataType.INT64));
            args[1] = IValue.from((PtNDArray) m.create(LongBuffer.wrap(in.attentionMask()), new Shape(b, p + t),
                    DataType.INT64));
            args[2] = IValue.from((PtNDArray) m.create(LongBuffer.wrap(in.positionIds()), new Shape(b, t),
                    DataType.INT64));
            PtNDArray[] pastArrays = new PtNDArray[2 * layers];
            int floats = b * heads * p * dim;
            Shape shape = new Shape(b, heads, p, dim);
            for (int l = 0; l < layers; l++) {
                pastArrays[2 * l] = modelType((PtNDArray) m.create(slice(pastKeys[l], floats), shape, DataType.FLOAT32));
                pastArrays[2 * l + 1] = modelType((PtNDArray) m.create(slice(pastValues[l], floats), shape,
                        DataType.FLOAT32));
            }
            args[3] = IValue.listFrom(pastArrays);
            result = block.forward(args);
            IValue[] tuple = result.toIValueTuple();
            if (tuple.length != 2) {
                throw new KvqException(ErrorCode.MODEL_INVALID, "forward returned " + tuple.length + " values, expected "
                        + "(logits, present)");
            }
            NDArray logitArray = tuple[0].toTensor(m);
            PtNDArray[] present = tuple[1].toTensorArray(m);
            if (present.length != 2 * layers) {
                throw new KvqException(ErrorCode.MODEL_INVALID, "present holds " + present.length + " tensors, expected "
                        + 2 * layers + " (key and value of " + layers + " layers)");
            }
            Shape expected = new Shape(b, heads, p + t, dim);
            if (!present[0].getShape().equals(expected)) {
                throw new KvqException(ErrorCode.MODEL_INVALID, "present.0.key has shape " + present[0].getShape()
                        + ", expected " + expected);
            }
            logits = logitArray.toType(DataType.FLOAT32, false).toFloatArray();
            if (logits.length != b * t * vocab) {
                throw new KvqException(ErrorCode.MODEL_INVALID, "logits hold " + logits.length + " values, expected "
                        + b * t * vocab + " (vocab_size " + vocab + ")");
            }
            // one index for every layer, built rather than parsed: positions p.. of the token axis
            NDIndex newTokens = new NDIndex().addAllDim(2).addSliceDim(p, p + t);
            for (int l = 0; l < layers; l++) {
                newKv[2 * l] = present[2 * l].get(newTokens).toType(DataType.FLOAT32, false).toFloatArray();
                newKv[2 * l + 1] = present[2 * l + 1].get(newTokens).toType(DataType.FLOAT32, false).toFloatArray();
            }
            for (IValue v : tuple) {
                v.close();
            }
            return new NewTokenStep(logits, newKv, layerStarts, t, heads, dim, vocab);
        } catch (ai.djl.engine.EngineException e) {
            throw new KvqException(ErrorCode.RUNTIME_FAILURE, "PyTorch failed on a step of " + b + "x" + t + " tokens "
                    + "after " + p + ": " + e.getMessage(), e);
        } finally {
            for (IValue a : args) {
                if (a != null) {
                    a.close();
                }
            }
            if (result != null) {
                result.close();
            }
        }
    }

    /**
     * Runs TorchScript without its profiling graph optimizer on the calling thread (the setting is per thread), unless
     * {@code ai.djl.pytorch.graph_optimizer} is set: a decode loop changes its shapes every step, and each new shape
     * would send the optimizer to profile and compile again (seconds per compile on CUDA, through NVRTC).
     */
    static void plainExecutor() {
        if (System.getProperty("ai.djl.pytorch.graph_optimizer") == null) {
            JniUtils.setGraphExecutorOptimize(false);
        }
    }

    /** The past in the model's K/V type (kvq's host buffers are float32). */
    private PtNDArray modelType(PtNDArray past) {
        return halfKv ? (PtNDArray) past.toType(DataType.FLOAT16, false) : past;
    }

    private static ByteBuffer slice(ByteBuffer b, int floats) {
        return b.duplicate().order(ByteOrder.nativeOrder()).limit(floats * Float.BYTES).slice()
                .order(ByteOrder.nativeOrder());
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        if (quantized != null) {
            quantized.close();
        }
        if (stepManager != null) {
            stepManager.close();
        }
        model.close();
    }

    private void checkOpen() {
        if (closed) {
            throw new KvqException(ErrorCode.CLOSED, "this decoder was closed");
        }
    }
}
