package dev.kvq.runtime.onnx.graph;

import ai.onnxruntime.OnnxJavaType;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.StoredLayer;
import dev.kvq.generate.spi.StoredRun;
import dev.kvq.spi.AffineForm;
import dev.kvq.spi.BitPacking;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * Random tensors of a {@link QuantizedPastLayout} in its canonical form (codes packed by kvq's {@link BitPacking}, raw
 * runs as float16 or float32 values) and, decoded in plain Java by {@link StoredRun}'s formulas, the dense float32 past
 * {@code [B, H, T + R, D]} they stand for: the reference the rewritten graph must reproduce.
 */
final class QuantizedPastSample {
    /** A tensor's element type, shape and native-order bytes. */
    record Raw(OnnxJavaType type, long[] shape, ByteBuffer bytes) {
        OnnxTensor tensor(OrtEnvironment env) throws OrtException {
            return OnnxTensor.createTensor(env, bytes.duplicate().order(ByteOrder.nativeOrder()), shape, type);
        }
    }

    final QuantizedPastLayout layout;
    final int batch;
    final int tokens;
    final int residual;
    final boolean halfKv;
    /** Graph input name to tensor, in the layout's tensor order. */
    final Map<String, Raw> canonical = new LinkedHashMap<>();
    /** Per layer, keys (0) and values (1): float32 {@code [B, H, T + R, D]}. */
    final float[][][] dense;

    private QuantizedPastSample(QuantizedPastLayout layout, int batch, int tokens, boolean halfKv, long seed) {
        this.layout = layout;
        this.batch = batch;
        this.tokens = tokens;
        this.residual = layout.layers().getFirst().residualCapacity();
        this.halfKv = halfKv;
        int layers = layout.layers().size();
        this.dense = new float[layers][2][batch * layout.kvHeads() * (tokens + residual) * layout.headDim()];
        SplittableRandom random = new SplittableRandom(seed);
        for (int l = 0; l < layers; l++) {
            StoredLayer stored = layout.layers().get(l);
            for (int kind = 0; kind < 2; kind++) {
                List<StoredRun> runs = kind == 0 ? stored.keys() : stored.values();
                String name = kind == 0 ? "key" : "value";
                for (int r = 0; r < runs.size(); r++) {
                    addRun(l, name, r, runs.get(r), dense[l][kind], random);
                }
            }
            if (residual > 0) {
                addResidual(QuantizedPastLayout.residualName(l, "key"), dense[l][0], random);
                addResidual(QuantizedPastLayout.residualName(l, "value"), dense[l][1], random);
            }
        }
    }

    /** {@code tokens} quantized tokens of every run (a multiple of every per-channel group size) for {@code batch}. */
    static QuantizedPastSample random(QuantizedPastLayout layout, int batch, int tokens, boolean halfKv, long seed) {
        return new QuantizedPastSample(layout, batch, tokens, halfKv, seed);
    }

    /** Positions of the past: quantized tokens, then the residual. */
    int pastLength() {
        return tokens + residual;
    }

    /**
     * The dense past of a layer's keys or values as the original model takes it: float32, or float16 rounded once;
     * positions {@code mask} marks as padding hold 0 instead of the history's values, so the original model gives what
     * the rewritten one gives only if both leave those positions out.
     */
    Raw densePast(int layer, String kind, OrtRun.StepMask mask) {
        float[] values = dense[layer][kind.equals("key") ? 0 : 1];
        int heads = layout.kvHeads();
        int dim = layout.headDim();
        long[] shape = {batch, heads, pastLength(), dim};
        ByteBuffer b = direct(values.length * (halfKv ? 2 : 4));
        for (int i = 0; i < values.length; i++) {
            int position = i / dim % pastLength();
            int sequence = i / (dim * pastLength() * heads);
            float v = mask.real(sequence, position) ? values[i] : 0;
            if (halfKv) {
                b.putShort(Float.floatToFloat16(v));
            } else {
                b.putFloat(v);
            }
        }
        return new Raw(halfKv ? OnnxJavaType.FLOAT16 : OnnxJavaType.FLOAT, shape, b.rewind());
    }

    private void addRun(int layer, String kind, int index, StoredRun run, float[] out, SplittableRandom random) {
        if (run.raw()) {
            addRawRun(QuantizedPastLayout.codesName(layer, kind, index), run, out, random);
            return;
        }
        int dim = layout.headDim();
        int heads = layout.kvHeads();
        int hr = run.heads();
        int rows = tokens * batch * hr;
        // codes [T, B, hr, rowBytes], each row packed from fresh zeroed bytes as kvq packs it
        int[][] codes = new int[rows][dim];
        ByteBuffer codeBytes = direct(rows * run.rowBytes(dim));
        MemorySegment codeSegment = MemorySegment.ofBuffer(codeBytes);
        for (int row = 0; row < rows; row++) {
            for (int d = 0; d < dim; d++) {
                codes[row][d] = random.nextInt(1 << run.bits());
            }
            BitPacking.pack(codes[row], 0, dim, run.bits(), codeSegment.asSlice((long) row * run.rowBytes(dim),
                    run.rowBytes(dim)), 0);
        }
        // scales and zeros: [T, B, hr, D / g] per token, [T / g, B, hr, D] per channel
        int paramRows = run.axis() == StoredRun.GroupAxis.TOKEN ? rows : tokens / run.groupSize() * batch * hr;
        int count = paramRows * run.paramsPerRow(dim);
        float[] scales = new float[count];
        float[] zeros = new float[count];
        int levels = (1 << run.bits()) - 1;
        for (int i = 0; i < count; i++) {
            scales[i] = roundParam(run, (float) ((0.5 + random.nextDouble()) * 3.0 / levels));
            float zero;
            if (run.form() == AffineForm.SCALE_MIN) {
                zero = (float) (-1.5 + 0.5 * random.nextDouble());
            } else if (run.codeOffset() != 0) {
                zero = (float) (random.nextDouble() - 0.5);
            } else {
                zero = (float) (-levels / 2.0 + random.nextDouble() - 0.5);
            }
            zeros[i] = roundParam(run, zero);
        }
        for (int p = 0; p < tokens; p++) {
            for (int b = 0; b < batch; b++) {
                for (int h = 0; h < hr; h++) {
                    int row = row(p, b, hr, h);
                    for (int d = 0; d < dim; d++) {
                        int param = run.axis() == StoredRun.GroupAxis.TOKEN
                                ? row * (dim / run.groupSize()) + d / run.groupSize()
                                : ((p / run.groupSize() * batch + b) * hr + h) * dim + d;
                        int u = codes[row][d];
                        float s = scales[param];
                        float z = zeros[param];
                        float x = run.form() == AffineForm.ZERO_POINT ? ((float) (u + run.codeOffset()) + z) * s
                                : u * s + z;
                        out[((b * heads + run.firstHead() + h) * pastLength() + p) * dim + d] = x;
                    }
                }
            }
        }
        long[] codeShape = {tokens, batch, hr, run.rowBytes(dim)};
        long[] paramShape = {paramRows / (batch * hr), batch, hr, run.paramsPerRow(dim)};
        canonical.put(QuantizedPastLayout.codesName(layer, kind, index), new Raw(OnnxJavaType.UINT8, codeShape,
                codeBytes.rewind()));
        canonical.put(QuantizedPastLayout.scalesName(layer, kind, index), params(run, paramShape, scales));
        canonical.put(QuantizedPastLayout.zerosName(layer, kind, index), params(run, paramShape, zeros));
    }

    /**
     * Row of token {@code p} of sequence {@code b}, head {@code h} of a run of {@code hr} heads: {@code [T, B, hr]}
     * rows, or {@code [T / block, B, hr, block]} in the layout's token blocks.
     */
    private int row(int p, int b, int hr, int h) {
        return (int) QuantizedPastLayout.row(p, layout.tokenBlock(), batch, b, hr, h);
    }

    /** A raw run: its values themselves, float16 or float32 {@code [T, B, heads, D]}, and no scales or zeros. */
    private void addRawRun(String name, StoredRun run, float[] out, SplittableRandom random) {
        int dim = layout.headDim();
        int heads = layout.kvHeads();
        boolean half = run.bits() == 16;
        int bytes = half ? 2 : 4;
        ByteBuffer b = direct(tokens * batch * run.heads() * dim * bytes);
        for (int p = 0; p < tokens; p++) {
            for (int s = 0; s < batch; s++) {
                for (int h = 0; h < run.heads(); h++) {
                    for (int d = 0; d < dim; d++) {
                        float v = (float) (random.nextDouble() * 5 - 2.5);
                        int at = (row(p, s, run.heads(), h) * dim + d) * bytes;
                        if (half) {
                            short bits = Float.floatToFloat16(v);
                            b.putShort(at, bits);
                            v = Float.float16ToFloat(bits);
                        } else {
                            b.putFloat(at, v);
                        }
                        out[((s * heads + run.firstHead() + h) * pastLength() + p) * dim + d] = v;
                    }
                }
            }
        }
        canonical.put(name, new Raw(half ? OnnxJavaType.FLOAT16 : OnnxJavaType.FLOAT,
                new long[] {tokens, batch, run.heads(), dim}, b.rewind()));
    }

    private void addResidual(String name, float[] out, SplittableRandom random) {
        int heads = layout.kvHeads();
        int dim = layout.headDim();
        ByteBuffer b = direct(batch * heads * residual * dim * (halfKv ? 2 : 4));
        for (int s = 0; s < batch; s++) {
            for (int h = 0; h < heads; h++) {
                for (int i = 0; i < residual; i++) {
                    for (int d = 0; d < dim; d++) {
                        float v = (float) (random.nextDouble() * 3 - 1.5);
                        if (halfKv) {
                            short half = Float.floatToFloat16(v);
                            b.putShort(half);
                            v = Float.float16ToFloat(half);
                        } else {
                            b.putFloat(v);
                        }
                        out[((s * heads + h) * pastLength() + tokens + i) * dim + d] = v;
                    }
                }
            }
        }
        canonical.put(name, new Raw(halfKv ? OnnxJavaType.FLOAT16 : OnnxJavaType.FLOAT,
                new long[] {batch, heads, residual, dim}, b.rewind()));
    }

    /** A parameter as the run stores it: a float16 run's values are the float16 ones, widened. */
    private static float roundParam(StoredRun run, float v) {
        return run.halfParams() ? Float.float16ToFloat(Float.floatToFloat16(v)) : v;
    }

    private static Raw params(StoredRun run, long[] shape, float[] values) {
        ByteBuffer b = direct(values.length * run.paramBytes());
        for (float v : values) {
            if (run.halfParams()) {
                b.putShort(Float.floatToFloat16(v));
            } else {
                b.putFloat(v);
            }
        }
        return new Raw(run.halfParams() ? OnnxJavaType.FLOAT16 : OnnxJavaType.FLOAT, shape, b.rewind());
    }

    private static ByteBuffer direct(int bytes) {
        return ByteBuffer.allocateDirect(bytes).order(ByteOrder.nativeOrder());
    }
}
