package dev.kvq.runtime.onnx.graph;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.onnxruntime.OnnxJavaType;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import ai.onnxruntime.TensorInfo;
import dev.kvq.runtime.onnx.graph.proto.ModelProto;
import dev.kvq.runtime.onnx.graph.proto.TypeProto;
import dev.kvq.runtime.onnx.graph.proto.ValueInfoProto;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.IntBuffer;
import java.nio.LongBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** Runs ONNX models on the CPU with ONNX Runtime's Java API and reads every output back as float32 (integers too). */
final class OrtRun {
    static final OrtEnvironment ENV = OrtEnvironment.getEnvironment();

    /** An output widened to float32, with its shape. */
    record Output(long[] shape, float[] values) {
    }

    private OrtRun() {
    }

    static OrtSession.SessionOptions options() throws OrtException {
        OrtSession.SessionOptions options = new OrtSession.SessionOptions();
        options.setIntraOpNumThreads(1);
        options.setSessionLogLevel(ai.onnxruntime.OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR);
        return options;
    }

    static OrtSession session(byte[] model) throws OrtException {
        return ENV.createSession(model, options());
    }

    /** Runs {@code session} on {@code inputs} (closed afterwards) and returns every output. */
    static Map<String, Output> run(OrtSession session, Map<String, OnnxTensor> inputs) throws OrtException {
        Map<String, Output> out = new HashMap<>();
        try (OrtSession.Result result = session.run(inputs)) {
            for (Map.Entry<String, OnnxValue> e : result) {
                OnnxTensor t = (OnnxTensor) e.getValue();
                TensorInfo info = t.getInfo();
                ByteBuffer bytes = t.getByteBuffer().order(ByteOrder.nativeOrder());
                float[] values = new float[Math.toIntExact(info.getNumElements())];
                for (int i = 0; i < values.length; i++) {
                    values[i] = switch (info.type) {
                        case FLOAT16 -> Float.float16ToFloat(bytes.getShort(i * 2));
                        case INT64 -> bytes.getLong(i * 8);
                        case INT32 -> bytes.getInt(i * 4);
                        case BOOL, INT8, UINT8 -> bytes.get(i);
                        default -> bytes.getFloat(i * 4);
                    };
                }
                out.put(e.getKey(), new Output(info.getShape(), values));
            }
        } finally {
            for (OnnxTensor t : inputs.values()) {
                t.close();
            }
        }
        return out;
    }

    /**
     * Which positions of a step are real, per sequence: the first {@code quantized[b]} of the {@code T} quantized
     * slots, the first {@code residual[b]} of the {@code R} residual slots, and the new tokens {@code fresh} marks
     * ({@code [B, t]}, 0 for left padding). The rewritten graph takes the counts and {@code fresh}; {@link #dense()} is
     * the whole mask the original model takes, built here position by position.
     */
    record StepMask(int batch, int quantizedLength, int residualLength, int newTokens, long[] quantized,
                    long[] residual, long[] fresh) {
        /** Every position of every sequence real. */
        static StepMask full(int batch, int quantizedLength, int residualLength, int newTokens) {
            return padded(batch, quantizedLength, residualLength, newTokens, -1);
        }

        /**
         * Sequences {@code b} with {@code (b + shift)} odd are short (none for a negative shift): about two thirds of
         * the quantized slots and half the residual slots real, the first new token left padding where the sequence
         * has a real past (a padding query with nothing to attend to is not a state kvq produces).
         */
        static StepMask padded(int batch, int quantizedLength, int residualLength, int newTokens, int shift) {
            long[] q = new long[batch];
            long[] r = new long[batch];
            long[] fresh = new long[batch * newTokens];
            Arrays.fill(fresh, 1);
            for (int b = 0; b < batch; b++) {
                boolean shortSequence = shift >= 0 && (b + shift) % 2 == 1;
                q[b] = shortSequence ? Math.max(0, quantizedLength - quantizedLength / 3 - 1) : quantizedLength;
                r[b] = shortSequence ? Math.max(0, residualLength - residualLength / 2 - 1) : residualLength;
                if (shortSequence && q[b] + r[b] > 0 && newTokens > 1) {
                    fresh[b * newTokens] = 0;
                }
            }
            return new StepMask(batch, quantizedLength, residualLength, newTokens, q, r, fresh);
        }

        int pastLength() {
            return quantizedLength + residualLength;
        }

        /** Whether past position {@code p} (quantized slots, then residual slots) of sequence {@code b} is real. */
        boolean real(int b, int p) {
            return p < quantizedLength ? p < quantized[b] : p - quantizedLength < residual[b];
        }

        /** The original model's {@code attention_mask}, {@code [B, T + R + t]}. */
        long[] dense() {
            int width = pastLength() + newTokens;
            long[] mask = new long[batch * width];
            for (int b = 0; b < batch; b++) {
                for (int p = 0; p < pastLength(); p++) {
                    mask[b * width + p] = real(b, p) ? 1 : 0;
                }
                System.arraycopy(fresh, b * newTokens, mask, b * width + pastLength(), newTokens);
            }
            return mask;
        }

        /** Positions of the new tokens: after the sequence's real past, padding at 1 (as Hugging Face pads them). */
        long[] positions() {
            long[] positions = new long[batch * newTokens];
            for (int b = 0; b < batch; b++) {
                long next = quantized[b] + residual[b];
                for (int i = 0; i < newTokens; i++) {
                    positions[b * newTokens + i] = fresh[b * newTokens + i] == 0 ? 1 : next++;
                }
            }
            return positions;
        }
    }

    /**
     * The token inputs of a decoder step: ids, the mask as {@code session} takes it (the whole mask for the original
     * model; the counts and the new tokens' part for a rewritten one), positions after each sequence's real past.
     */
    static Map<String, OnnxTensor> tokenInputs(OrtSession session, StepMask mask, long seed) throws OrtException {
        int batch = mask.batch();
        int newTokens = mask.newTokens();
        Map<String, OnnxTensor> in = new HashMap<>();
        long[] ids = new long[batch * newTokens];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = Math.floorMod(seed * 31 + i * 97L, 60);
        }
        in.put("input_ids", OnnxTensor.createTensor(ENV, LongBuffer.wrap(ids), new long[] {batch, newTokens}));
        var names = session.getInputNames();
        if (names.contains(QuantizedPastRewriter.QUANTIZED_TOKENS)) {
            assertTrue(!names.contains("attention_mask"), "a rewritten model takes no attention_mask");
            in.put(QuantizedPastRewriter.QUANTIZED_TOKENS, OnnxTensor.createTensor(ENV,
                    LongBuffer.wrap(mask.quantized()), new long[] {batch}));
            assertEquals(mask.residualLength() > 0, names.contains(QuantizedPastRewriter.RESIDUAL_TOKENS),
                    "kvq.residual_tokens is an input exactly when there is a residual");
            if (mask.residualLength() > 0) {
                in.put(QuantizedPastRewriter.RESIDUAL_TOKENS, OnnxTensor.createTensor(ENV,
                        LongBuffer.wrap(mask.residual()), new long[] {batch}));
            }
            in.put(QuantizedPastRewriter.NEW_MASK, OnnxTensor.createTensor(ENV, LongBuffer.wrap(mask.fresh()),
                    new long[] {batch, newTokens}));
        } else {
            long[] shape = {batch, mask.pastLength() + newTokens};
            TensorInfo info = (TensorInfo) session.getInputInfo().get("attention_mask").getInfo();
            if (info.type == OnnxJavaType.INT32) {
                int[] dense = Arrays.stream(mask.dense()).mapToInt(Math::toIntExact).toArray();
                in.put("attention_mask", OnnxTensor.createTensor(ENV, IntBuffer.wrap(dense), shape));
            } else {
                in.put("attention_mask", OnnxTensor.createTensor(ENV, LongBuffer.wrap(mask.dense()), shape));
            }
        }
        if (names.contains("position_ids")) {
            in.put("position_ids", OnnxTensor.createTensor(ENV, LongBuffer.wrap(mask.positions()),
                    new long[] {batch, newTokens}));
        }
        if (names.contains("use_cache_branch")) {
            in.put("use_cache_branch", OnnxTensor.createTensor(ENV, new boolean[] {mask.pastLength() > 0}));
        }
        return in;
    }

    /**
     * Adds the value {@code attention_mask} as a graph output of a rewritten model, so a test can read the mask the
     * graph built; {@code elemType} is the original model's mask type, which the built mask keeps.
     */
    static ModelProto withMaskOutput(ModelProto rewritten, int elemType) {
        var graph = rewritten.getGraph().toBuilder();
        graph.addOutput(ValueInfoProto.newBuilder().setName(QuantizedPastRewriter.MASK)
                .setType(TypeProto.newBuilder().setTensorType(TypeProto.Tensor.newBuilder().setElemType(elemType))));
        return rewritten.toBuilder().setGraph(graph).build();
    }

    /** The mask the graph built equals the one built here position by position. */
    static void assertMask(StepMask expected, Output actual, String what) {
        assertArrayEquals(new long[] {expected.batch(), expected.pastLength() + expected.newTokens()}, actual.shape(),
                what + ": mask shape");
        long[] dense = expected.dense();
        for (int i = 0; i < dense.length; i++) {
            if (dense[i] != actual.values()[i]) {
                int width = expected.pastLength() + expected.newTokens();
                throw new AssertionError(what + ": mask of sequence " + i / width + " at position " + i % width
                        + " is " + actual.values()[i] + ", expected " + dense[i] + " (T " + expected.quantizedLength()
                        + ", R " + expected.residualLength() + ", real " + Arrays.toString(expected.quantized())
                        + " / " + Arrays.toString(expected.residual()) + ")");
            }
        }
    }

    /** Adds every {@code past_key_values.*} value as a graph output, so a test can read the past the graph decoded. */
    static ModelProto withPastOutputs(ModelProto model, int layers, int kvType) {
        var graph = model.getGraph().toBuilder();
        for (int l = 0; l < layers; l++) {
            for (String kind : new String[] {"key", "value"}) {
                graph.addOutput(ValueInfoProto.newBuilder().setName(KvSignature.pastName(l, kind))
                        .setType(TypeProto.newBuilder().setTensorType(TypeProto.Tensor.newBuilder().setElemType(kvType))));
            }
        }
        return model.toBuilder().setGraph(graph).build();
    }

    /** {@code present[:, :, from:, :]} of a {@code [B, H, P + t, D]} output. */
    static Output tokensFrom(Output present, int from) {
        long[] s = present.shape();
        int b = (int) s[0];
        int h = (int) s[1];
        int total = (int) s[2];
        int d = (int) s[3];
        int t = total - from;
        float[] out = new float[b * h * t * d];
        for (int i = 0; i < b * h; i++) {
            System.arraycopy(present.values(), (i * total + from) * d, out, i * t * d, t * d);
        }
        return new Output(new long[] {b, h, t, d}, out);
    }

    /** Every element equal bit for bit. */
    static void assertIdentical(float[] expected, Output actual, String what) {
        assertEquals(expected.length, actual.values().length, what + ": element count");
        List<String> diffs = new ArrayList<>();
        for (int i = 0; i < expected.length && diffs.size() < 5; i++) {
            if (Float.floatToIntBits(expected[i]) != Float.floatToIntBits(actual.values()[i])) {
                diffs.add("[" + i + "] expected " + expected[i] + " but was " + actual.values()[i]);
            }
        }
        assertTrue(diffs.isEmpty(), () -> what + " differs: " + diffs);
    }

    /**
     * Every element within {@code ulps} float16 units in the last place of the tensor's largest magnitude: a float16
     * decode rounds at each of its few operations (whose operands are as large as the values) where the float32
     * reference rounds once.
     */
    static void assertHalfUlps(float[] expected, Output actual, int ulps, String what) {
        assertEquals(expected.length, actual.values().length, what + ": element count");
        float largest = 0;
        for (float e : expected) {
            largest = Math.max(largest, Math.abs(e));
        }
        float ulp = Math.max(Math.ulp(largest) * (1 << 13), 6.0e-8f);
        for (int i = 0; i < expected.length; i++) {
            float e = expected[i];
            if (!(Math.abs(actual.values()[i] - e) <= ulps * ulp)) {
                throw new AssertionError(what + " [" + i + "]: expected " + e + " but was " + actual.values()[i]
                        + ", more than " + ulps + " float16 ulps apart");
            }
        }
    }

    /** Same shape, and every element within {@code relative} of the larger magnitude (at least 1). */
    static double assertClose(Output expected, Output actual, double relative, String what) {
        assertArrayEquals(expected.shape(), actual.shape(), what + ": shape");
        double worst = 0;
        for (int i = 0; i < expected.values().length; i++) {
            float a = expected.values()[i];
            float b = actual.values()[i];
            double err = Math.abs(a - b) / Math.max(1, Math.max(Math.abs(a), Math.abs(b)));
            if (!(err <= relative)) {
                throw new AssertionError(what + " [" + i + "]: expected " + a + " but was " + b);
            }
            worst = Math.max(worst, err);
        }
        return worst;
    }
}
