package dev.kvq.runtime.djl;

import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.engine.PtNDManager;
import ai.djl.pytorch.engine.PtSymbolBlock;
import ai.djl.pytorch.jni.IValue;
import ai.djl.pytorch.jni.IValueUtils;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.spi.DeviceMemory;
import dev.kvq.generate.spi.QuantizedDecoder;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.QuantizedStep;
import dev.kvq.generate.spi.Step;
import dev.kvq.generate.spi.StoredLayer;
import dev.kvq.generate.spi.StoredRun;
import dev.kvq.spi.AffineForm;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.LongBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * The TorchScript model reading a quantized history in place ({@link QuantizedPastProgram}'s entry): the history
 * lives in PyTorch tensors on the model's device ({@link TorchMemory}), and a step is one call into the program with
 * the token inputs (one small tensor), the queued uploads and the references to the history; it returns the logits and
 * the new tokens' K/V, the only tensors copied back.
 */
final class DjlQuantizedDecoder implements QuantizedDecoder, AutoCloseable {
    private final QuantizedPastLayout layout;
    private final PtSymbolBlock block;
    private final PtNDManager manager;
    private final TorchMemory memory;
    private final boolean halfKv;
    private final int layers;
    private final int heads;
    private final int dim;
    private final int vocab;
    private final IValue meta;
    /** The step's token inputs, one direct buffer reused between steps (DJL copies a heap buffer into a new one). */
    private ByteBuffer tokenBytes = ByteBuffer.allocateDirect(0);
    private long[] refs = new long[0];
    private float[] logits = new float[0];
    private float[] newKv = new float[0];
    private final float[][] stepTensors;
    private final long[] stepOffsets;
    private boolean closed;

    DjlQuantizedDecoder(PtSymbolBlock block, PtNDManager manager, QuantizedPastLayout layout, boolean halfKv,
                        int vocab) {
        layout.check();
        this.layout = layout;
        this.block = block;
        this.manager = manager;
        this.halfKv = halfKv;
        this.layers = layout.layers().size();
        this.heads = layout.kvHeads();
        this.dim = layout.headDim();
        this.vocab = vocab;
        this.memory = new TorchMemory(block, manager, manager.getDevice());
        this.stepTensors = new float[2 * layers][];
        this.stepOffsets = new long[2 * layers];
        this.meta = IValue.listFrom(meta(layout, halfKv));
    }

    /**
     * {@code [dtype, kvHeads, headDim, layers]}, then per layer, for keys then values: the run count and per run
     * {@code heads, bits, axis (0 token, 1 channel), groupSize, form (0 zero point, 1 scale-min), codeOffset,
     * halfParams}. The dtype is PyTorch's code for float16 (5) or float32 (6), the model's K/V type.
     */
    static long[] meta(QuantizedPastLayout layout, boolean halfKv) {
        List<Long> m = new ArrayList<>(List.of(halfKv ? 5L : 6L, (long) layout.kvHeads(), (long) layout.headDim(),
                (long) layout.layers().size()));
        for (StoredLayer layer : layout.layers()) {
            for (List<StoredRun> runs : List.of(layer.keys(), layer.values())) {
                m.add((long) runs.size());
                for (StoredRun run : runs) {
                    m.add((long) run.heads());
                    m.add((long) run.bits());
                    m.add(run.axis() == StoredRun.GroupAxis.TOKEN ? 0L : 1L);
                    m.add((long) run.groupSize());
                    m.add(run.form() == AffineForm.SCALE_MIN ? 1L : 0L);
                    m.add((long) run.codeOffset());
                    m.add(run.halfParams() ? 1L : 0L);
                }
            }
        }
        return m.stream().mapToLong(Long::longValue).toArray();
    }

    @Override
    public QuantizedPastLayout layout() {
        return layout;
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
        if (closed) {
            throw new KvqException(ErrorCode.CLOSED, "this decoder was closed");
        }
        DjlDecoder.plainExecutor();
        int b = in.batch();
        int t = in.tokens();
        int n = 3 * b * t + 2 * b;
        if (tokenBytes.capacity() < n * Long.BYTES) {
            tokenBytes = ByteBuffer.allocateDirect(n * Long.BYTES).order(ByteOrder.nativeOrder());
        }
        LongBuffer ints = tokenBytes.clear().limit(n * Long.BYTES).asLongBuffer();
        ints.put(in.inputIds(), 0, b * t).put(in.newTokenMask(), 0, b * t).put(in.positionIds(), 0, b * t)
                .put(in.quantizedTokens(), 0, b).put(in.residualTokens(), 0, b);
        long[] past = in.past();
        if (refs.length != 2 * past.length) {
            refs = new long[2 * past.length];
        }
        for (int i = 0; i < past.length; i++) {
            memory.reference(past[i], refs, 2 * i);
        }
        TorchMemory.Pending pending = memory.takePending();
        PtNDArray tokenInputs = (PtNDArray) manager.create(tokenBytes, new Shape(n), DataType.INT64);
        IValue[] owned = {IValue.from(tokenInputs), IValue.listFrom(refs), IValue.from((long) in.quantizedLength()),
                IValue.from((long) in.residualLength()), IValue.from((long) b), IValue.from((long) t),
                IValue.listFrom(pending.staging()), IValue.listFrom(pending.transfers())};
        IValue result = null;
        try {
            result = IValueUtils.runMethod(block, QuantizedPastProgram.FORWARD, owned[0], memory.slotList(), owned[1],
                    meta, owned[2], owned[3], owned[4], owned[5], owned[6], owned[7]);
            IValue[] tuple = result.toIValueTuple();
            try (PtNDArray l = tuple[0].toTensor(manager); PtNDArray kv = tuple[1].toTensor(manager)) {
                logits = l.toFloatArray();
                newKv = kv.toFloatArray();
            } finally {
                for (IValue v : tuple) {
                    v.close();
                }
            }
        } catch (ai.djl.engine.EngineException e) {
            throw new KvqException(ErrorCode.RUNTIME_FAILURE, "PyTorch failed on a step of " + b + "x" + t + " tokens "
                    + "over " + in.quantizedLength() + " quantized and " + in.residualLength() + " residual positions: "
                    + e.getMessage(), e);
        } finally {
            for (IValue v : owned) {
                v.close();
            }
            if (result != null) {
                result.close();
            }
            tokenInputs.close();
            pending.close();
        }
        if (logits.length != b * t * vocab || newKv.length != 2 * layers * b * heads * t * dim) {
            throw new KvqException(ErrorCode.MODEL_INVALID, "the quantized-past entry returned " + logits.length
                    + " logits and " + newKv.length + " K/V values, expected " + b * t * vocab + " and "
                    + 2 * layers * b * heads * t * dim);
        }
        // every layer's tensor lies in the one flat array, one after another (reused: a step lives until the next)
        for (int i = 0; i < stepTensors.length; i++) {
            stepTensors[i] = newKv;
            stepOffsets[i] = (long) i * b * heads * t * dim;
        }
        return new NewTokenStep(logits, stepTensors, stepOffsets, t, heads, dim, vocab);
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        meta.close();
        memory.close();
    }
}
