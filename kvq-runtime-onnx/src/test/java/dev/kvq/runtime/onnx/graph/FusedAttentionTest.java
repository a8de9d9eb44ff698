package dev.kvq.runtime.onnx.graph;

import static dev.kvq.runtime.onnx.graph.QuantizedPastRewriterTest.compare;
import static dev.kvq.runtime.onnx.graph.QuantizedPastRewriterTest.fixture;
import static dev.kvq.runtime.onnx.graph.QuantizedPastRewriterTest.requireShared;
import static dev.kvq.runtime.onnx.graph.QuantizedPastRewriterTest.tinyLayout;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.onnxruntime.OnnxJavaType;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import ai.onnxruntime.TensorInfo;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.StoredLayer;
import dev.kvq.generate.spi.StoredRun;
import dev.kvq.generate.spi.StoredRun.GroupAxis;
import dev.kvq.runtime.onnx.graph.proto.ModelProto;
import dev.kvq.runtime.onnx.graph.proto.NodeProto;
import dev.kvq.runtime.onnx.graph.proto.TensorProto;
import dev.kvq.runtime.onnx.nativeapi.CustomOps;
import dev.kvq.spi.AffineForm;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * With kvq's attention operator in place of each layer's attention core (ONNX Runtime's CPU provider, the operator
 * computing in Java), a rewritten decoder still gives what the original gives on the dense past decoded from the
 * same quantized history, within the rewriter's 1e-5, on every fixture and the shared Shakespeare model (per-head
 * runs, both group axes, a raw run, residual windows, padding in every region); no node of the dequantizing path is
 * left in the graph. Exports whose attention has another shape keep the dequantizing path.
 */
class FusedAttentionTest {
    private static final int QUERY_HEADS = 4;

    @ParameterizedTest
    @ValueSource(strings = {"base", "fp16-kv", "no-position-ids", "merged"})
    void fusedLayersMatchTheOriginalOnTheDecodedPast(String variant) throws OrtException, IOException {
        Path model = fixture(variant);
        try (OrtSession original = OrtRun.ENV.createSession(model.toString(), OrtRun.options())) {
            for (int residual : new int[] {0, 4}) {
                // token blocks of 8 on the layout with a residual: rows as kvq lays them out for its operator
                QuantizedPastLayout layout = tinyLayout(residual).withTokenBlock(residual > 0 ? 8 : 1);
                try (Fused fused = Fused.of(model, layout, original)) {
                    // a merged decoder attends inside If branches, and a float16-KV export of a float32 model casts
                    // its past before attention: both keep the dequantizing path, which must still be right
                    boolean fusable = !variant.equals("merged") && !variant.equals("fp16-kv");
                    assertEquals(fusable ? 2 : 0, fused.layers, variant + ": layers fused");
                    for (int[] shape : new int[][] {{1, 0, -1}, {2, 8, -1}, {2, 8, 0}, {2, 0, 0}, {1, 16, 1}}) {
                        compare(original, fused.session, layout, shape[0], shape[1], shape[2],
                                variant + " fused, residual " + residual + ", batch " + shape[0] + ", " + shape[1]
                                        + " quantized tokens" + (shape[2] < 0 ? "" : ", padded"));
                    }
                }
            }
        }
    }

    @Test
    void fusedLayersMatchTheSharedShakespeareModel() throws OrtException, IOException {
        Path model = requireShared("models/shakespeare-char-llama/model.onnx");
        // KIVI-like layers (4-bit per-channel keys, 2-bit per-token values) alternate with per-head precision (4- and
        // 2-bit keys, 8-bit values); the last layer holds float32 values unquantized (a raw run)
        List<StoredLayer> layers = new ArrayList<>();
        for (int l = 0; l < 8; l++) {
            List<StoredRun> keys = l % 2 == 0
                    ? List.of(new StoredRun(0, 2, 4, GroupAxis.CHANNEL, 32, AffineForm.SCALE_MIN, 0, true))
                    : List.of(new StoredRun(0, 1, 4, GroupAxis.TOKEN, 32, AffineForm.ZERO_POINT, -8, false),
                            new StoredRun(1, 1, 2, GroupAxis.TOKEN, 16, AffineForm.ZERO_POINT, -2, false));
            List<StoredRun> values = l == 7 ? List.of(StoredRun.raw(2, false, 64)) : l % 2 == 0
                    ? List.of(new StoredRun(0, 2, 2, GroupAxis.TOKEN, 32, AffineForm.SCALE_MIN, 0, true))
                    : List.of(new StoredRun(0, 2, 8, GroupAxis.TOKEN, 64, AffineForm.ZERO_POINT, -128, false));
            layers.add(new StoredLayer(keys, values, 8));
        }
        QuantizedPastLayout layout = new QuantizedPastLayout(2, 64, layers);
        try (OrtSession original = OrtRun.ENV.createSession(model.toString(), OrtRun.options());
             Fused fused = Fused.of(model, layout, original)) {
            assertEquals(8, fused.layers, "every layer attends through kvq's operator");
            compare(original, fused.session, layout, 1, 0, -1, "shakespeare fused, residual only");
            compare(original, fused.session, layout, 2, 64, -1, "shakespeare fused, batch 2, 64 quantized tokens");
            compare(original, fused.session, layout, 2, 64, 0, "shakespeare fused, padded");
        }
        // rows in token blocks, as kvq lays the history out for its operator: the raw run and both group axes too
        QuantizedPastLayout blocked = layout.withTokenBlock(32);
        try (OrtSession original = OrtRun.ENV.createSession(model.toString(), OrtRun.options());
             Fused fused = Fused.of(model, blocked, original)) {
            compare(original, fused.session, blocked, 2, 64, -1, "shakespeare fused, token blocks of 32");
            compare(original, fused.session, blocked, 2, 64, 0, "shakespeare fused, token blocks of 32, padded");
        }
    }

    @Test
    void theFusedGraphKeepsNoDequantizingNodeAndNoPresent() throws IOException {
        Path model = fixture("base");
        ModelProto proto = ModelProto.parseFrom(Files.readAllBytes(model));
        var rewritten = QuantizedPastRewriter.rewriteFused(proto, tinyLayout(4), QUERY_HEADS, "dev.kvq.test", false);
        List<NodeProto> nodes = rewritten.model().getGraph().getNodeList();
        assertEquals(2, nodes.stream().filter(n -> n.getDomain().equals("dev.kvq.test")).count(), "one per layer");
        assertFalse(nodes.stream().anyMatch(n -> n.getName().contains(".run")), "no run is dequantized");
        assertFalse(nodes.stream().anyMatch(n -> n.getOpType().equals("Softmax")), "the model's softmax is gone");
        assertFalse(nodes.stream().anyMatch(n -> n.getOutputList().stream().anyMatch(o -> o.startsWith("present."))),
                "no present is computed");
        assertTrue(rewritten.model().getOpsetImportList().stream().anyMatch(o -> o.getDomain().equals("dev.kvq.test")),
                "the domain is imported");
    }

    @Test
    void aRepetitionOfHeadsInAnotherOrderIsNotFused() throws IOException {
        // Unsqueeze at axis 1 before the repetition makes query head h read KV head h % kvHeads, not h / group:
        // kvq's operator must leave that layer to the model's own attention
        ModelProto proto = ModelProto.parseFrom(Files.readAllBytes(fixture("base")));
        var graph = proto.getGraph().toBuilder();
        int unsqueeze = -1;
        for (int i = 0; i < graph.getNodeCount(); i++) {
            NodeProto n = graph.getNode(i);
            if (n.getOpType().equals("Unsqueeze") && n.getInput(0).equals("present.0.key")) {
                unsqueeze = i;
            }
        }
        assertTrue(unsqueeze >= 0, "the fixture repeats layer 0's keys after an Unsqueeze");
        TensorProto axis1 = TensorProto.newBuilder().setDataType(TensorProto.DataType.INT64_VALUE).addDims(1)
                .setRawData(com.google.protobuf.ByteString.copyFrom(new byte[] {1, 0, 0, 0, 0, 0, 0, 0})).build();
        graph.addNode(0, NodeProto.newBuilder().setOpType("Constant").setName("test/axis1").addOutput("test/axis1")
                .addAttribute(dev.kvq.runtime.onnx.graph.proto.AttributeProto.newBuilder().setName("value")
                        .setType(dev.kvq.runtime.onnx.graph.proto.AttributeProto.AttributeType.TENSOR).setT(axis1)));
        graph.setNode(unsqueeze + 1, graph.getNode(unsqueeze + 1).toBuilder().setInput(1, "test/axis1"));
        var rewritten = QuantizedPastRewriter.rewriteFused(proto.toBuilder().setGraph(graph).build(), tinyLayout(4),
                QUERY_HEADS, "dev.kvq.test", false);
        assertEquals(1, rewritten.operators().size(), "layer 1 only");
        assertEquals(1, rewritten.model().getGraph().getNodeList().stream()
                .filter(n -> n.getDomain().equals("dev.kvq.test")).count());
    }

    /** A fused rewrite's session on ONNX Runtime's CPU provider, with the mask as an extra output. */
    private record Fused(OrtSession session, CustomOps operators, int layers) implements AutoCloseable {
        static Fused of(Path model, QuantizedPastLayout layout, OrtSession original) throws OrtException, IOException {
            var rewritten = QuantizedPastRewriter.rewriteFused(ModelProto.parseFrom(Files.readAllBytes(model)), layout,
                    QUERY_HEADS, "dev.kvq.test", false);
            OnnxJavaType type = ((TensorInfo) original.getInputInfo().get(QuantizedPastRewriter.MASK).getInfo()).type;
            int maskType = type == OnnxJavaType.INT32 ? TensorProto.DataType.INT32_VALUE
                    : TensorProto.DataType.INT64_VALUE;
            OrtSession.SessionOptions options = OrtRun.options();
            CustomOps operators = rewritten.operators().isEmpty() ? null
                    : CustomOps.register(options, "dev.kvq.test", rewritten.operators(), CustomOps.Device.CPU);
            OrtSession session = OrtRun.ENV.createSession(OrtRun.withMaskOutput(rewritten.model(), maskType)
                    .toByteArray(), options);
            return new Fused(session, operators, rewritten.operators().size());
        }

        @Override
        public void close() throws OrtException {
            session.close();
            if (operators != null) {
                operators.close();
            }
        }
    }
}
