package dev.kvq.runtime.onnx.graph;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.StoredLayer;
import dev.kvq.generate.spi.StoredRun;
import dev.kvq.generate.spi.StoredRun.GroupAxis;
import dev.kvq.runtime.onnx.graph.proto.ModelProto;
import dev.kvq.runtime.onnx.graph.proto.NodeProto;
import dev.kvq.runtime.onnx.graph.proto.TensorProto;
import dev.kvq.spi.AffineForm;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The rewritten graph decodes every kind of run exactly as kvq does: the past it computes equals, bit for bit, the
 * Java decode of {@link StoredRun}'s formulas for a float32 model (a float16 model decodes in float16: within 4 float16
 * ulps of the tensor's largest magnitude), for 2-, 4- and 8-bit codes, per-token and per-channel groups, both affine
 * forms, float16 and float32 parameters, per-head runs of different widths, raw float16 and float32 runs (a
 * full-precision cache on the device: values, no scales or zeros),
 * with and without a residual, for an empty and a non-empty history and batches of one to three; and the attention
 * mask it builds from per-sequence counts equals the mask built here, padding included. A synthetic decoder with
 * head_dim 64 carries the runs (the tiny fixtures' head_dim 16 holds no planar 4- or 2-bit row).
 */
class RunDecodeTest {
    private static final int LAYERS = 2;
    private static final int HEADS = 4;
    private static final int DIM = 64;
    private static final int NEW_TOKENS = 3;
    /** What the decode may use: ops ONNX Runtime's CUDA execution provider has for these types. */
    private static final Set<String> CUDA_OPS = Set.of("Constant", "Cast", "Reshape", "Div", "Mul", "Sub", "Add",
            "Concat", "Transpose", "Shape", "Slice", "Gather");
    /** What building the mask may use (int64 and bool): ops the CUDA execution provider has too. */
    private static final Set<String> MASK_OPS = Set.of("Constant", "Shape", "Gather", "Range", "Unsqueeze", "Less",
            "Cast", "Concat");

    /** Per-head precision: runs of different widths, axes and forms in one layer. */
    private static final List<StoredRun> MIXED_KEYS = List.of(
            run(0, 2, 4, GroupAxis.TOKEN, 32, AffineForm.ZERO_POINT, -8, true),
            run(2, 1, 2, GroupAxis.CHANNEL, 16, AffineForm.SCALE_MIN, 0, true),
            run(3, 1, 8, GroupAxis.TOKEN, 64, AffineForm.ZERO_POINT, -128, true));
    private static final List<StoredRun> MIXED_VALUES = List.of(
            run(0, 1, 8, GroupAxis.CHANNEL, 4, AffineForm.SCALE_MIN, 0, false),
            run(1, 3, 2, GroupAxis.TOKEN, 16, AffineForm.ZERO_POINT, -2, false));

    static StoredRun run(int first, int heads, int bits, GroupAxis axis, int group, AffineForm form, int offset,
                         boolean half) {
        return new StoredRun(first, heads, bits, axis, group, form, offset, half);
    }

    static Stream<Arguments> variants() {
        var zp = AffineForm.ZERO_POINT;
        var sm = AffineForm.SCALE_MIN;
        return Stream.of(
                Arguments.of("8-bit per token", List.of(run(0, 4, 8, GroupAxis.TOKEN, 64, zp, -128, false)),
                        List.of(run(0, 4, 8, GroupAxis.TOKEN, 32, zp, 0, true))),
                Arguments.of("4-bit per token", List.of(run(0, 4, 4, GroupAxis.TOKEN, 32, zp, -8, true)),
                        List.of(run(0, 4, 4, GroupAxis.TOKEN, 16, sm, 0, false))),
                Arguments.of("2-bit per token", List.of(run(0, 4, 2, GroupAxis.TOKEN, 16, zp, 0, false)),
                        List.of(run(0, 4, 2, GroupAxis.TOKEN, 64, sm, 0, true))),
                Arguments.of("4-bit per channel (KIVI keys)", List.of(run(0, 4, 4, GroupAxis.CHANNEL, 16, sm, 0, true)),
                        List.of(run(0, 4, 2, GroupAxis.TOKEN, 32, sm, 0, true))),
                Arguments.of("2- and 8-bit per channel", List.of(run(0, 4, 2, GroupAxis.CHANNEL, 8, zp, -2, false)),
                        List.of(run(0, 4, 8, GroupAxis.CHANNEL, 1, zp, -8, false))),
                Arguments.of("per-head runs of different widths", MIXED_KEYS, MIXED_VALUES),
                Arguments.of("raw float32 keys, raw float16 values", List.of(StoredRun.raw(4, false, DIM)),
                        List.of(StoredRun.raw(4, true, DIM))),
                Arguments.of("raw runs beside quantized runs", List.of(run(0, 1, 16, GroupAxis.TOKEN, DIM, sm, 0, true),
                        run(1, 3, 4, GroupAxis.TOKEN, 32, zp, -8, true)), List.of(run(0, 2, 2, GroupAxis.CHANNEL, 8, sm,
                        0, true), run(2, 2, 32, GroupAxis.TOKEN, DIM, sm, 0, false))));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void decodesEveryRunAsKvqDoes(String name, List<StoredRun> keys, List<StoredRun> values) throws OrtException {
        for (int residual : new int[] {0, 5}) {
            // layer 1 swaps the roles, so keys and values of one layer differ and each run form is seen in both
            QuantizedPastLayout layout = new QuantizedPastLayout(HEADS, DIM, List.of(new StoredLayer(keys, values, residual),
                    new StoredLayer(values, keys, residual)));
            for (int kvType : new int[] {TensorProto.DataType.FLOAT_VALUE, TensorProto.DataType.FLOAT16_VALUE}) {
                checkExact(layout, kvType, 17, TensorProto.DataType.INT64_VALUE, name + ", residual " + residual
                        + ", KV type " + kvType);
            }
        }
    }

    /** Below opset 14 planes are split in int32; Unsqueeze takes its axes as an attribute; an int32 mask stays int32. */
    @Test
    void decodesInInt32BelowOpset14() throws OrtException {
        QuantizedPastLayout mixed = new QuantizedPastLayout(HEADS, DIM, List.of(
                new StoredLayer(MIXED_KEYS, MIXED_VALUES, 2), new StoredLayer(MIXED_VALUES, MIXED_KEYS, 2)));
        ModelProto rewritten = checkExact(mixed, TensorProto.DataType.FLOAT_VALUE, 13, TensorProto.DataType.INT32_VALUE,
                "opset 13");
        assertEquals(13, rewritten.getOpsetImport(0).getVersion(), "the model's opset is left as it is");
        assertTrue(rewritten.getGraph().getNodeList().stream().filter(n -> n.getOpType().equals("Cast"))
                .anyMatch(n -> n.getAttribute(0).getI() == TensorProto.DataType.INT32_VALUE), "planes split in int32");
    }

    /**
     * Rewrites the synthetic decoder, runs it on random histories and compares its past, its mask and its outputs to
     * the reference. The synthetic decoder does not read its mask, so the mask the graph builds is read back as an
     * output and compared with one built here position by position; some sequences have padding in every region.
     */
    private static ModelProto checkExact(QuantizedPastLayout layout, int kvType, int opset, int maskType, String what)
            throws OrtException {
        boolean half = kvType == TensorProto.DataType.FLOAT16_VALUE;
        ModelProto model = SyntheticDecoder.build(LAYERS, HEADS, DIM, kvType, opset, maskType);
        ModelProto rewritten = QuantizedPastRewriter.rewrite(model, layout);
        Set<String> ops = new TreeSet<>();
        Set<String> maskOps = new TreeSet<>();
        for (NodeProto n : rewritten.getGraph().getNodeList()) {
            if (n.getName().startsWith("kvq/mask/")) {
                maskOps.add(n.getOpType());
            } else if (n.getName().startsWith("kvq/")) {
                ops.add(n.getOpType());
            }
        }
        assertTrue(CUDA_OPS.containsAll(ops), what + ": decode uses " + ops);
        assertTrue(MASK_OPS.containsAll(maskOps), what + ": the mask uses " + maskOps);
        ModelProto readable = OrtRun.withMaskOutput(OrtRun.withPastOutputs(rewritten, LAYERS, kvType), maskType);
        try (OrtSession original = OrtRun.session(model.toByteArray());
             OrtSession quantized = OrtRun.session(readable.toByteArray())) {
            // batch, quantized tokens, which sequences are short (-1: none)
            int[][] shapes = {{1, 0, -1}, {2, 16, 0}, {1, 32, 1}, {3, 16, 1}};
            for (int[] shape : shapes) {
                int batch = shape[0];
                int tokens = shape[1];
                String step = what + ", batch " + batch + ", " + tokens + " quantized tokens"
                        + (shape[2] < 0 ? "" : ", padded");
                QuantizedPastSample sample = QuantizedPastSample.random(layout, batch, tokens, half, 31L * tokens + batch);
                int past = sample.pastLength();
                OrtRun.StepMask mask = OrtRun.StepMask.padded(batch, tokens, sample.residual, NEW_TOKENS, shape[2]);
                Map<String, OnnxTensor> in = OrtRun.tokenInputs(quantized, mask, tokens);
                for (var e : sample.canonical.entrySet()) {
                    in.put(e.getKey(), e.getValue().tensor(OrtRun.ENV));
                }
                Map<String, OrtRun.Output> got = OrtRun.run(quantized, in);
                OrtRun.assertMask(mask, got.get(QuantizedPastRewriter.MASK), step);
                Map<String, OnnxTensor> dense = OrtRun.tokenInputs(original, mask, tokens);
                for (int l = 0; l < LAYERS; l++) {
                    for (String kind : new String[] {"key", "value"}) {
                        dense.put(KvSignature.pastName(l, kind), sample.densePast(l, kind, mask).tensor(OrtRun.ENV));
                    }
                }
                Map<String, OrtRun.Output> expected = OrtRun.run(original, dense);
                for (int l = 0; l < LAYERS; l++) {
                    for (int k = 0; k < 2; k++) {
                        String kind = k == 0 ? "key" : "value";
                        float[] reference = sample.dense[l][k];
                        OrtRun.Output fresh = OrtRun.tokensFrom(expected.get(KvSignature.presentName(l, kind)), past);
                        if (half) {
                            // a float16 model decodes in float16: a few roundings where float32 has one
                            OrtRun.assertHalfUlps(reference, got.get(KvSignature.pastName(l, kind)), 4,
                                    step + ": decoded past of layer " + l + " " + kind);
                            OrtRun.assertClose(fresh, got.get(QuantizedPastLayout.newName(l, kind)), 1e-2,
                                    step + ": new " + kind + "s of layer " + l);
                        } else {
                            OrtRun.assertIdentical(reference, got.get(KvSignature.pastName(l, kind)),
                                    step + ": decoded past of layer " + l + " " + kind);
                            OrtRun.assertIdentical(fresh.values(), got.get(QuantizedPastLayout.newName(l, kind)),
                                    step + ": new " + kind + "s of layer " + l);
                        }
                    }
                }
                if (half) {
                    OrtRun.assertClose(expected.get("logits"), got.get("logits"), 1e-2, step + ": logits");
                } else {
                    OrtRun.assertIdentical(expected.get("logits").values(), got.get("logits"), step + ": logits");
                }
                assertTrue(got.keySet().stream().noneMatch(n -> n.startsWith("present.")), "present outputs dropped");
            }
        }
        return rewritten;
    }
}
