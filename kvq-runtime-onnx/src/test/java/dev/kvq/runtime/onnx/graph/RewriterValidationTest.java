package dev.kvq.runtime.onnx.graph;

import static dev.kvq.runtime.onnx.graph.RunDecodeTest.run;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.StoredLayer;
import dev.kvq.generate.spi.StoredRun;
import dev.kvq.generate.spi.StoredRun.GroupAxis;
import dev.kvq.runtime.onnx.graph.proto.ModelProto;
import dev.kvq.runtime.onnx.graph.proto.OperatorSetIdProto;
import dev.kvq.runtime.onnx.graph.proto.TensorProto;
import dev.kvq.runtime.onnx.graph.proto.ValueInfoProto;
import dev.kvq.spi.AffineForm;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.function.UnaryOperator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;

/**
 * Models that cannot read a quantized past are refused with {@code MODEL_INVALID} and a message that names the input
 * or output at fault and the fix; layouts the graph cannot decode with {@code ILLEGAL_ARGUMENT} or
 * {@code UNSUPPORTED}. A rewrite leaves everything it does not replace as it was.
 */
class RewriterValidationTest {
    private static final int FLOAT = TensorProto.DataType.FLOAT_VALUE;
    private static final StoredRun EIGHT_BIT = run(0, 4, 8, GroupAxis.TOKEN, 64, AffineForm.ZERO_POINT, -128, false);

    private static QuantizedPastLayout layout(int layers, int heads, int dim) {
        List<StoredRun> runs = List.of(run(0, heads, 8, GroupAxis.TOKEN, dim, AffineForm.ZERO_POINT, -128, false));
        return new QuantizedPastLayout(heads, dim, java.util.Collections.nCopies(layers, new StoredLayer(runs, runs, 0)));
    }

    private static ModelProto model() {
        return SyntheticDecoder.build(2, 4, 64, FLOAT, 17);
    }

    /** The model with graph input or output {@code name} replaced (or removed where {@code change} gives null). */
    private static ModelProto changing(String name, UnaryOperator<ValueInfoProto> change) {
        ModelProto m = model();
        var g = m.getGraph().toBuilder().clearInput().clearOutput();
        for (ValueInfoProto v : m.getGraph().getInputList()) {
            ValueInfoProto c = v.getName().equals(name) ? change.apply(v) : v;
            if (c != null) {
                g.addInput(c);
            }
        }
        for (ValueInfoProto v : m.getGraph().getOutputList()) {
            ValueInfoProto c = v.getName().equals(name) ? change.apply(v) : v;
            if (c != null) {
                g.addOutput(c);
            }
        }
        return m.toBuilder().setGraph(g).build();
    }

    private static void assertRefused(ErrorCode code, Executable rewrite, String... mentioned) {
        KvqException e = assertThrows(KvqException.class, rewrite);
        assertEquals(code, e.code(), e.getMessage());
        for (String m : mentioned) {
            assertTrue(e.getMessage().contains(m), () -> "message names '" + m + "': " + e.getMessage());
        }
    }

    @Test
    void refusesAModelWithoutPastInputs() {
        ModelProto noPast = changing("past_key_values.0.key", v -> null);
        assertRefused(ErrorCode.MODEL_INVALID, () -> QuantizedPastRewriter.rewrite(noPast, layout(2, 4, 64)),
                "'past_key_values.0.key'", "text-generation-with-past");
        ModelProto noPresent = changing("present.1.value", v -> null);
        assertRefused(ErrorCode.MODEL_INVALID, () -> QuantizedPastRewriter.rewrite(noPresent, layout(2, 4, 64)),
                "'present.1.value'", "text-generation-with-past");
    }

    @Test
    void refusesALayoutOfAnotherModel() {
        assertRefused(ErrorCode.MODEL_INVALID, () -> QuantizedPastRewriter.rewrite(model(), layout(3, 4, 64)),
                "2 layers", "describes 3");
        assertRefused(ErrorCode.MODEL_INVALID, () -> QuantizedPastRewriter.rewrite(model(), layout(2, 2, 64)),
                "'past_key_values.0.key'", "4 on axis 1", "2 KV heads");
        assertRefused(ErrorCode.MODEL_INVALID, () -> QuantizedPastRewriter.rewrite(model(), layout(2, 4, 32)),
                "'past_key_values.0.key'", "head_dim");
    }

    @Test
    void refusesKvNotLaidOutBatchHeadsTokensDim() {
        ModelProto tokensFirst = changing("past_key_values.0.value", v -> SyntheticDecoder.value(v.getName(), FLOAT,
                "batch", "past", 4, 64));
        assertRefused(ErrorCode.MODEL_INVALID, () -> QuantizedPastRewriter.rewrite(tokensFirst, layout(2, 4, 64)),
                "'past_key_values.0.value'", "axis 2", "[batch, kv_heads, tokens, head_dim]");
        ModelProto flat = changing("past_key_values.1.key", v -> SyntheticDecoder.value(v.getName(), FLOAT,
                "batch", "past", 256));
        assertRefused(ErrorCode.MODEL_INVALID, () -> QuantizedPastRewriter.rewrite(flat, layout(2, 4, 64)),
                "'past_key_values.1.key'", "3 dims");
        ModelProto integer = changing("past_key_values.0.key", v -> SyntheticDecoder.value(v.getName(),
                TensorProto.DataType.INT64_VALUE, "batch", 4, "past", 64));
        assertRefused(ErrorCode.MODEL_INVALID, () -> QuantizedPastRewriter.rewrite(integer, layout(2, 4, 64)),
                "'past_key_values.0.key'", "float32 or float16");
    }

    @Test
    void refusesFilesThatAreNoModelAndOldOpsets(@TempDir Path dir) throws IOException {
        Path junk = Files.write(dir.resolve("model.onnx"), new byte[] {(byte) 0xff, 0x13, 0x07, (byte) 0x80});
        assertRefused(ErrorCode.MODEL_INVALID, () -> QuantizedPastRewriter.rewrite(junk, layout(2, 4, 64)),
                junk.toString());
        ModelProto old = model().toBuilder().setOpsetImport(0, OperatorSetIdProto.newBuilder().setVersion(9)).build();
        assertRefused(ErrorCode.MODEL_INVALID, () -> QuantizedPastRewriter.rewrite(old, layout(2, 4, 64)),
                "opset 9");
    }

    @Test
    void refusesLayoutsTheGraphCannotDecode() {
        // head_dim 16 cannot hold a 32-code chunk of 4-bit codes
        StoredRun fourBit = run(0, 2, 4, GroupAxis.TOKEN, 16, AffineForm.ZERO_POINT, -8, false);
        QuantizedPastLayout partialChunks = new QuantizedPastLayout(2, 16,
                List.of(new StoredLayer(List.of(fourBit), List.of(fourBit), 0)));
        assertRefused(ErrorCode.UNSUPPORTED, () -> QuantizedPastRewriter.rewrite(
                QuantizedPastRewriterTest.fixture("base"), partialChunks), "head_dim 16");
        StoredRun firstHeads = run(0, 2, 8, GroupAxis.TOKEN, 64, AffineForm.ZERO_POINT, 0, false);
        QuantizedPastLayout gap = new QuantizedPastLayout(4, 64, List.of(
                new StoredLayer(List.of(firstHeads), List.of(EIGHT_BIT), 0), new StoredLayer(List.of(EIGHT_BIT),
                        List.of(EIGHT_BIT), 0)));
        assertRefused(ErrorCode.ILLEGAL_ARGUMENT, () -> QuantizedPastRewriter.rewrite(model(), gap), "cover 2 heads of 4");
        QuantizedPastLayout residuals = new QuantizedPastLayout(4, 64, List.of(
                new StoredLayer(List.of(EIGHT_BIT), List.of(EIGHT_BIT), 8),
                new StoredLayer(List.of(EIGHT_BIT), List.of(EIGHT_BIT), 0)));
        assertRefused(ErrorCode.ILLEGAL_ARGUMENT, () -> QuantizedPastRewriter.rewrite(model(), residuals), "residual");
    }

    @Test
    void refusesAModelWithoutAnAttentionMask() {
        ModelProto noMask = changing("attention_mask", v -> null);
        assertRefused(ErrorCode.MODEL_INVALID, () -> QuantizedPastRewriter.rewrite(noMask, layout(2, 4, 64)),
                "'attention_mask'", "text-generation-with-past");
    }

    /**
     * A residual adds {@code kvq.residual_tokens} after the quantized count and each layer's residual keys and values
     * after its runs; a raw run (full precision on the device) takes its values alone, no scales or zeros.
     */
    @Test
    void takesResidualCountsAndRawRunsAsTheLayoutSays() {
        StoredRun raw = StoredRun.raw(4, false, 64);
        QuantizedPastLayout layout = new QuantizedPastLayout(4, 64, List.of(
                new StoredLayer(List.of(EIGHT_BIT), List.of(raw), 8), new StoredLayer(List.of(raw), List.of(EIGHT_BIT),
                        8)));
        ModelProto rewritten = QuantizedPastRewriter.rewrite(model(), layout);
        List<String> inputs = rewritten.getGraph().getInputList().stream().map(ValueInfoProto::getName).toList();
        assertEquals(List.of("input_ids", QuantizedPastRewriter.QUANTIZED_TOKENS, QuantizedPastRewriter.RESIDUAL_TOKENS,
                QuantizedPastRewriter.NEW_MASK,
                "kvq.0.key.0.codes", "kvq.0.key.0.scales", "kvq.0.key.0.zeros", "kvq.0.value.0.codes",
                "kvq.0.key.residual", "kvq.0.value.residual",
                "kvq.1.key.0.codes", "kvq.1.value.0.codes", "kvq.1.value.0.scales", "kvq.1.value.0.zeros",
                "kvq.1.key.residual", "kvq.1.value.residual"), inputs);
        ValueInfoProto rawCodes = rewritten.getGraph().getInputList().stream()
                .filter(v -> v.getName().equals("kvq.0.value.0.codes")).findFirst().orElseThrow();
        assertEquals(FLOAT, rawCodes.getType().getTensorType().getElemType(), "a raw float32 run's codes are float32");
    }

    @Test
    void keepsWhatItDoesNotReplace() {
        ModelProto m = model();
        QuantizedPastLayout layout = layout(2, 4, 64);
        ModelProto rewritten = QuantizedPastRewriter.rewrite(m, layout);
        assertEquals(m.getOpsetImportList(), rewritten.getOpsetImportList());
        assertEquals(m.getGraph().getInitializerList(), rewritten.getGraph().getInitializerList());
        List<String> inputs = rewritten.getGraph().getInputList().stream().map(ValueInfoProto::getName).toList();
        // the mask gives way, in its place, to the per-sequence counts and the new tokens' part
        assertEquals(List.of("input_ids", QuantizedPastRewriter.QUANTIZED_TOKENS, QuantizedPastRewriter.NEW_MASK,
                "kvq.0.key.0.codes", "kvq.0.key.0.scales", "kvq.0.key.0.zeros",
                "kvq.0.value.0.codes", "kvq.0.value.0.scales", "kvq.0.value.0.zeros",
                "kvq.1.key.0.codes", "kvq.1.key.0.scales", "kvq.1.key.0.zeros",
                "kvq.1.value.0.codes", "kvq.1.value.0.scales", "kvq.1.value.0.zeros"), inputs);
        List<String> outputs = rewritten.getGraph().getOutputList().stream().map(ValueInfoProto::getName).toList();
        assertEquals(List.of("logits", "kvq.0.key.new", "kvq.0.value.new", "kvq.1.key.new", "kvq.1.value.new"),
                outputs);
        // the original nodes follow the decode, unchanged and in order
        var original = m.getGraph().getNodeList();
        var nodes = rewritten.getGraph().getNodeList();
        int first = nodes.indexOf(original.getFirst());
        assertEquals(original, nodes.subList(first, first + original.size()));
        assertTrue(nodes.subList(0, first).stream().allMatch(n -> n.getName().startsWith("kvq/")));
    }
}
