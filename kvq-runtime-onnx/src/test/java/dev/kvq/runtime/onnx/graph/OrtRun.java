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
import java.nio.LongBuffer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/** Runs ONNX models on the CPU with ONNX Runtime's Java API and reads every output back as float32. */
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
                    values[i] = info.type == OnnxJavaType.FLOAT16 ? Float.float16ToFloat(bytes.getShort(i * 2))
                            : bytes.getFloat(i * 4);
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

    /** The token inputs of a decoder step: ids, an all-ones mask over past and new tokens, positions after the past. */
    static Map<String, OnnxTensor> tokenInputs(OrtSession session, int batch, int newTokens, int pastLength, long seed)
            throws OrtException {
        Map<String, OnnxTensor> in = new HashMap<>();
        long[] ids = new long[batch * newTokens];
        long[] positions = new long[batch * newTokens];
        for (int i = 0; i < ids.length; i++) {
            ids[i] = Math.floorMod(seed * 31 + i * 97L, 60);
            positions[i] = pastLength + i % newTokens;
        }
        long[] mask = new long[batch * (pastLength + newTokens)];
        java.util.Arrays.fill(mask, 1);
        in.put("input_ids", OnnxTensor.createTensor(ENV, LongBuffer.wrap(ids), new long[] {batch, newTokens}));
        in.put("attention_mask", OnnxTensor.createTensor(ENV, LongBuffer.wrap(mask),
                new long[] {batch, pastLength + newTokens}));
        if (session.getInputNames().contains("position_ids")) {
            in.put("position_ids", OnnxTensor.createTensor(ENV, LongBuffer.wrap(positions),
                    new long[] {batch, newTokens}));
        }
        if (session.getInputNames().contains("use_cache_branch")) {
            in.put("use_cache_branch", OnnxTensor.createTensor(ENV, new boolean[] {pastLength > 0}));
        }
        return in;
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
