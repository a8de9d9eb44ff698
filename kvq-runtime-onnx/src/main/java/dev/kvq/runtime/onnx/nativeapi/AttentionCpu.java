package dev.kvq.runtime.onnx.nativeapi;

import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.StoredRun;
import dev.kvq.spi.AffineForm;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * {@link AttentionSpec} computed on the CPU, in float32: per sequence and KV head, the keys and values of every
 * position are decoded once into two rows-by-{@code D} arrays (one head's history, never the layer's), then each
 * query head of the group attends over them. What ONNX Runtime's CPU provider runs for kvq's operator, and the
 * reference the CUDA kernel is checked against.
 */
final class AttentionCpu {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ValueLayout.OfShort F16 = ValueLayout.JAVA_SHORT_UNALIGNED;
    /** Per thread, one head's keys and values, the scores and one output row, grown as histories grow. */
    private static final ThreadLocal<float[][]> SCRATCH = ThreadLocal.withInitial(
            () -> new float[][] {new float[0], new float[0], new float[0], new float[0]});

    private AttentionCpu() {
    }

    /**
     * @param inputs the operator's inputs in {@link AttentionSpec} order, each over its whole tensor
     * @param dims their shapes
     * @param out {@code [B, heads, t, D]} in the model's type
     */
    static void compute(AttentionSpec spec, MemorySegment[] inputs, long[][] dims, MemorySegment out) {
        Shape s = Shape.of(spec, dims);
        int d = spec.headDim();
        int total = s.total();
        float[][] scratch = SCRATCH.get();
        int[] sizes = {total * d, total * d, total, d};
        for (int i = 0; i < sizes.length; i++) {
            if (scratch[i].length < sizes[i]) {
                scratch[i] = new float[Math.max(sizes[i], scratch[i].length * 3 / 2)];
            }
        }
        float[] keys = scratch[0];
        float[] values = scratch[1];
        float[] scores = scratch[2];
        float[] acc = scratch[3];
        int heads = spec.kvHeads() * spec.group();
        for (int b = 0; b < s.batch; b++) {
            for (int kvh = 0; kvh < spec.kvHeads(); kvh++) {
                decodeHead(spec, s, inputs, true, b, kvh, keys);
                decodeHead(spec, s, inputs, false, b, kvh, values);
                for (int g = 0; g < spec.group(); g++) {
                    int h = kvh * spec.group() + g;
                    for (int qi = 0; qi < s.newTokens; qi++) {
                        long q = (((long) b * heads + h) * s.newTokens + qi) * d;
                        long bias = b * s.biasBatchStride + h * s.biasHeadStride + (long) qi * total;
                        float max = Float.NEGATIVE_INFINITY;
                        for (int j = 0; j < total; j++) {
                            double dot = 0;
                            for (int c = 0; c < d; c++) {
                                dot += (double) read(inputs[0], spec.half(), q + c) * keys[j * d + c];
                            }
                            float score = (float) (dot * spec.scale()) + read(inputs[3], spec.half(), bias + j);
                            scores[j] = score;
                            max = Math.max(max, score);
                        }
                        java.util.Arrays.fill(acc, 0f);
                        float sum = 0f;
                        if (max != Float.NEGATIVE_INFINITY) {
                            for (int j = 0; j < total; j++) {
                                float w = (float) Math.exp(scores[j] - max);
                                sum += w;
                                for (int c = 0; c < d; c++) {
                                    acc[c] += w * values[j * d + c];
                                }
                            }
                        }
                        for (int c = 0; c < d; c++) {
                            write(out, spec.half(), q + c, sum > 0f ? acc[c] / sum : 0f);
                        }
                    }
                }
            }
        }
    }

    /** Every position's key or value of one head: quantized tokens, residual window, new tokens. */
    private static void decodeHead(AttentionSpec spec, Shape s, MemorySegment[] in, boolean key, int b, int kvh,
                                   float[] into) {
        int d = spec.headDim();
        int r = AttentionSpec.runOf(key ? spec.keys() : spec.values(), kvh);
        StoredRun run = (key ? spec.keys() : spec.values()).get(r);
        int first = key ? spec.keyInput(r) : spec.valueInput(r);
        for (int j = 0; j < s.quantized; j++) {
            decodeRow(run, spec.tokenBlock(), in[first], run.raw() ? null : in[first + 1],
                    run.raw() ? null : in[first + 2], s.batch, b, kvh - run.firstHead(), j, d, into, j * d);
        }
        int residual = spec.residualInput();
        for (int j = 0; j < s.residual; j++) {
            long base = (((long) b * spec.kvHeads() + kvh) * s.residual + j) * d;
            for (int c = 0; c < d; c++) {
                into[(s.quantized + j) * d + c] = read(in[residual + (key ? 0 : 1)], spec.half(), base + c);
            }
        }
        for (int j = 0; j < s.newTokens; j++) {
            long base = (((long) b * spec.kvHeads() + kvh) * s.newTokens + j) * d;
            for (int c = 0; c < d; c++) {
                into[(s.quantized + s.residual + j) * d + c] = read(in[key ? 1 : 2], spec.half(), base + c);
            }
        }
    }

    /**
     * Token {@code j} of head {@code hr} of a run ({@link StoredRun}'s layout and arithmetic, rows in blocks of
     * {@code tokenBlock} tokens).
     */
    static void decodeRow(StoredRun run, int tokenBlock, MemorySegment codes, MemorySegment scales,
                          MemorySegment zeros, int batch, int b, int hr, int j, int d, float[] into, int at) {
        long row = QuantizedPastLayout.row(j, tokenBlock, batch, b, run.heads(), hr);
        if (run.raw()) {
            for (int c = 0; c < d; c++) {
                into[at + c] = read(codes, run.bits() == 16, row * d + c);
            }
            return;
        }
        int bits = run.bits();
        int planes = 8 / bits;
        int mask = (1 << bits) - 1;
        int perChunk = 16 * planes;
        long rowStart = row * run.rowBytes(d);
        boolean channel = run.axis() == StoredRun.GroupAxis.CHANNEL;
        long params = channel ? (((long) (j / run.groupSize()) * batch + b) * run.heads() + hr) * d
                : row * (d / run.groupSize());
        boolean scaleMin = run.form() == AffineForm.SCALE_MIN;
        for (int c = 0; c < d; c++) {
            int chunk = c / perChunk;
            int plane = (c % perChunk) / 16;
            int u = (codes.get(ValueLayout.JAVA_BYTE, rowStart + chunk * 16L + c % 16) >> (plane * bits)) & mask;
            long p = channel ? params + c : params + c / run.groupSize();
            float scale = read(scales, run.halfParams(), p);
            float zero = read(zeros, run.halfParams(), p);
            into[at + c] = scaleMin ? u * scale + zero : ((float) (u + run.codeOffset()) + zero) * scale;
        }
    }

    static float read(MemorySegment s, boolean half, long index) {
        return half ? Float.float16ToFloat(s.getAtIndex(F16, index)) : s.getAtIndex(F32, index);
    }

    private static void write(MemorySegment s, boolean half, long index, float value) {
        if (half) {
            s.setAtIndex(F16, index, Float.floatToFloat16(value));
        } else {
            s.setAtIndex(F32, index, value);
        }
    }

    /** Sizes read from the inputs' shapes, and checked against each other. */
    record Shape(int batch, int newTokens, int quantized, int residual, long biasBatchStride, long biasHeadStride) {
        int total() {
            return quantized + residual + newTokens;
        }

        static Shape of(AttentionSpec spec, long[][] dims) {
            long[] q = dims[AttentionSpec.QUERY];
            int heads = spec.kvHeads() * spec.group();
            check(spec, q.length == 4 && q[1] == heads && q[3] == spec.headDim(), "query", q);
            int batch = (int) q[0];
            int t = (int) q[2];
            long[] codes = dims[AttentionSpec.FIRST_CODES];
            int quantized = (int) codes[0];
            int residual = spec.residualCapacity() > 0 ? (int) dims[spec.residualInput()][2] : 0;
            int total = quantized + residual + t;
            long[] bias = dims[AttentionSpec.BIAS];
            check(spec, bias.length == 4 && (bias[0] == 1 || bias[0] == batch) && (bias[1] == 1 || bias[1] == heads)
                    && bias[2] == t && bias[3] == total, "bias", bias);
            long headStride = bias[1] == 1 ? 0 : (long) t * total;
            long batchStride = bias[0] == 1 ? 0 : bias[1] * (long) t * total;
            return new Shape(batch, t, quantized, residual, batchStride, headStride);
        }

        private static void check(AttentionSpec spec, boolean ok, String what, long[] shape) {
            if (!ok) {
                throw new dev.kvq.KvqException(dev.kvq.ErrorCode.RUNTIME_FAILURE, spec.name() + ": unexpected " + what
                        + " shape " + java.util.Arrays.toString(shape));
            }
        }
    }
}
