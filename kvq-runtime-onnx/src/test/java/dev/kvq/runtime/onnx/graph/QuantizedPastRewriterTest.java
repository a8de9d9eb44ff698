package dev.kvq.runtime.onnx.graph;

import static dev.kvq.runtime.onnx.graph.RunDecodeTest.run;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import ai.onnxruntime.OnnxJavaType;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import ai.onnxruntime.TensorInfo;
import com.google.protobuf.InvalidProtocolBufferException;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.StoredLayer;
import dev.kvq.generate.spi.StoredRun;
import dev.kvq.generate.spi.StoredRun.GroupAxis;
import dev.kvq.runtime.onnx.graph.proto.ModelProto;
import dev.kvq.runtime.onnx.graph.proto.StringStringEntryProto;
import dev.kvq.runtime.onnx.graph.proto.TensorProto;
import dev.kvq.spi.AffineForm;
import dev.kvq.testkit.Shared;
import java.io.IOException;
import java.io.OutputStream;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * A rewritten decoder gives what the original gives on the dense past kvq would decode from the same quantized
 * history: the same logits (within 1e-5 relative) and, as {@code kvq.{l}.{kind}.new}, the original's
 * {@code present[:, :, P:]}; the attention mask it builds from per-sequence counts of real quantized and residual
 * positions and the new tokens' mask equals the original's whole mask, with padding in every region. On the tiny Optimum exports (plain, float16 KV, merged with {@code use_cache_branch}, no
 * {@code position_ids}), the shared Shakespeare model, and a model whose weights are external data.
 */
class QuantizedPastRewriterTest {
    private static final double TOLERANCE = 1e-5;

    static Path fixture(String name) {
        try {
            return Path.of(QuantizedPastRewriterTest.class.getResource("/tiny-models/" + name + "/model.onnx").toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    /**
     * Two layers of 2 heads x 16 for the tiny fixtures, 8-bit runs only (head_dim 16 holds no planar 4- or 2-bit row;
     * {@link RunDecodeTest} covers those): keys per head (per token, then per channel), values in one run.
     */
    static QuantizedPastLayout tinyLayout(int residual) {
        List<StoredRun> keys = List.of(run(0, 1, 8, GroupAxis.TOKEN, 16, AffineForm.ZERO_POINT, -128, false),
                run(1, 1, 8, GroupAxis.CHANNEL, 4, AffineForm.SCALE_MIN, 0, true));
        List<StoredRun> values = List.of(run(0, 2, 8, GroupAxis.TOKEN, 8, AffineForm.ZERO_POINT, 0, true));
        return new QuantizedPastLayout(2, 16, List.of(new StoredLayer(keys, values, residual),
                new StoredLayer(values, keys, residual)));
    }

    @ParameterizedTest
    @ValueSource(strings = {"base", "fp16-kv", "no-position-ids", "merged"})
    void matchesTheOriginalOnTheDecodedPast(String variant) throws OrtException {
        Path model = fixture(variant);
        try (OrtSession original = OrtRun.ENV.createSession(model.toString(), OrtRun.options())) {
            // residual 0 and quantized 0 is a merged decoder's first step (use_cache_branch false); residual only,
            // then quantized tokens and a residual, are later steps
            // rows one token at a time, then in token blocks of 8 (as kvq's attention operator reads them)
            for (int residual : new int[] {0, 4}) {
                for (int block : new int[] {1, 8}) {
                    QuantizedPastLayout layout = tinyLayout(residual).withTokenBlock(block);
                    try (OrtSession rewritten = rewritten(model, layout, original, OrtRun.options())) {
                        // batch, quantized tokens, which sequences are short (-1: none)
                        for (int[] shape : new int[][] {{1, 0, -1}, {2, 8, -1}, {2, 8, 0}, {2, 0, 0}, {1, 16, 1}}) {
                            compare(original, rewritten, layout, shape[0], shape[1], shape[2],
                                    variant + ", residual " + residual + ", token block " + block + ", batch "
                                            + shape[0] + ", " + shape[1] + " quantized tokens"
                                            + (shape[2] < 0 ? "" : ", padded"));
                        }
                    }
                }
            }
        }
    }

    @Test
    void matchesTheSharedShakespeareModel() throws OrtException {
        Path model = requireShared("models/shakespeare-char-llama/model.onnx");
        // 8 layers of 2 heads x 64: KIVI-like layers (4-bit per-channel keys, 2-bit per-token values) alternate with
        // per-head precision (4- and 2-bit keys, 8-bit values)
        List<StoredLayer> layers = new ArrayList<>();
        for (int l = 0; l < 8; l++) {
            List<StoredRun> keys = l % 2 == 0
                    ? List.of(run(0, 2, 4, GroupAxis.CHANNEL, 32, AffineForm.SCALE_MIN, 0, true))
                    : List.of(run(0, 1, 4, GroupAxis.TOKEN, 32, AffineForm.ZERO_POINT, -8, false),
                            run(1, 1, 2, GroupAxis.TOKEN, 16, AffineForm.ZERO_POINT, -2, false));
            List<StoredRun> values = l % 2 == 0
                    ? List.of(run(0, 2, 2, GroupAxis.TOKEN, 32, AffineForm.SCALE_MIN, 0, true))
                    : List.of(run(0, 2, 8, GroupAxis.TOKEN, 64, AffineForm.ZERO_POINT, -128, false));
            layers.add(new StoredLayer(keys, values, 8));
        }
        QuantizedPastLayout layout = new QuantizedPastLayout(2, 64, layers);
        try (OrtSession original = OrtRun.ENV.createSession(model.toString(), OrtRun.options());
             OrtSession rewritten = rewritten(model, layout, original, OrtRun.options())) {
            compare(original, rewritten, layout, 1, 0, -1, "shakespeare, residual only");
            compare(original, rewritten, layout, 2, 64, -1, "shakespeare, batch 2, 64 quantized tokens");
            compare(original, rewritten, layout, 2, 64, 0, "shakespeare, batch 2, 64 quantized tokens, padded");
        }
    }

    @Test
    void leavesExternalWeightsWhereTheyAre(@TempDir Path dir) throws OrtException, IOException {
        Path model = externalize(fixture("base"), dir);
        long weights = Files.size(dir.resolve("weights.bin"));
        QuantizedPastLayout layout = tinyLayout(4);
        byte[] bytes = QuantizedPastRewriter.rewrite(model, layout);
        assertTrue(bytes.length < weights, "the rewritten model holds " + bytes.length + " bytes, the weights "
                + weights + ": they must stay external");
        ModelProto parsed = ModelProto.parseFrom(bytes);
        assertTrue(parsed.getGraph().getInitializerList().stream().anyMatch(t -> t.getDataLocation()
                == TensorProto.DataLocation.EXTERNAL), "initializers still point at weights.bin");
        // from bytes, ONNX Runtime knows no model folder: without the config entry it cannot find weights.bin
        assertThrows(OrtException.class, () -> OrtRun.session(bytes).close());
        OrtSession.SessionOptions options = OrtRun.options();
        QuantizedPastRewriter.useModelFolder(options, model);
        try (OrtSession original = OrtRun.ENV.createSession(model.toString(), OrtRun.options());
             OrtSession rewritten = rewritten(model, layout, original, options)) {
            compare(original, rewritten, layout, 2, 8, 1, "external data");
        }
    }

    /**
     * A session of {@code model} rewritten for {@code layout}, with the mask the graph builds as an extra output (in
     * the element type of {@code original}'s mask).
     */
    static OrtSession rewritten(Path model, QuantizedPastLayout layout, OrtSession original,
                                        OrtSession.SessionOptions options) throws OrtException {
        OnnxJavaType type = ((TensorInfo) original.getInputInfo().get(QuantizedPastRewriter.MASK).getInfo()).type;
        int maskType = type == OnnxJavaType.INT32 ? TensorProto.DataType.INT32_VALUE : TensorProto.DataType.INT64_VALUE;
        try {
            ModelProto proto = ModelProto.parseFrom(QuantizedPastRewriter.rewrite(model, layout));
            return OrtRun.ENV.createSession(OrtRun.withMaskOutput(proto, maskType).toByteArray(), options);
        } catch (InvalidProtocolBufferException e) {
            throw new AssertionError("the rewritten model does not parse", e);
        }
    }

    /**
     * Runs both models on one random history and compares the mask, logits and new tokens. Sequences {@code b} with
     * {@code (b + shift)} odd have padding in the quantized and residual regions and a left-padded new token
     * ({@link OrtRun.StepMask#padded}); the original model reads zeros where they are, so the logits agree only if
     * both models leave padding out.
     */
    static void compare(OrtSession original, OrtSession rewritten, QuantizedPastLayout layout, int batch,
                                int tokens, int shift, String what) throws OrtException {
        boolean half = ((TensorInfo) original.getInputInfo().get(KvSignature.pastName(0, "key")).getInfo()).type
                == OnnxJavaType.FLOAT16;
        QuantizedPastSample sample = QuantizedPastSample.random(layout, batch, tokens, half, what.hashCode());
        int past = sample.pastLength();
        int fresh = past == 0 ? 5 : 2;
        OrtRun.StepMask mask = OrtRun.StepMask.padded(batch, tokens, sample.residual, fresh, shift);
        Map<String, OnnxTensor> dense = OrtRun.tokenInputs(original, mask, tokens);
        Map<String, OnnxTensor> quantized = OrtRun.tokenInputs(rewritten, mask, tokens);
        for (int l = 0; l < layout.layers().size(); l++) {
            for (String kind : new String[] {"key", "value"}) {
                dense.put(KvSignature.pastName(l, kind), sample.densePast(l, kind, mask).tensor(OrtRun.ENV));
            }
        }
        for (var e : sample.canonical.entrySet()) {
            quantized.put(e.getKey(), e.getValue().tensor(OrtRun.ENV));
        }
        Map<String, OrtRun.Output> expected = OrtRun.run(original, dense);
        Map<String, OrtRun.Output> actual = OrtRun.run(rewritten, quantized);
        OrtRun.assertMask(mask, actual.get(QuantizedPastRewriter.MASK), what);
        OrtRun.assertClose(expected.get("logits"), actual.get("logits"), TOLERANCE, what + ": logits");
        for (int l = 0; l < layout.layers().size(); l++) {
            for (String kind : new String[] {"key", "value"}) {
                OrtRun.assertClose(OrtRun.tokensFrom(expected.get(KvSignature.presentName(l, kind)), past),
                        actual.get(QuantizedPastLayout.newName(l, kind)), TOLERANCE,
                        what + ": new " + kind + "s of layer " + l);
            }
        }
        // logits, the new K/V of every layer and the mask read back; no present
        assertEquals(2 + 2 * layout.layers().size(), actual.size(), what + ": outputs " + actual.keySet());
    }

    /**
     * A copy of {@code source} in {@code dir} whose initializers live in {@code dir/weights.bin} as ONNX external data
     * (location relative to the model, 4 KiB-aligned offsets), as exporters write models over 2 GB.
     */
    private static Path externalize(Path source, Path dir) throws IOException {
        ModelProto model = ModelProto.parseFrom(Files.readAllBytes(source));
        var graph = model.getGraph().toBuilder();
        long offset = 0;
        try (OutputStream out = Files.newOutputStream(dir.resolve("weights.bin"))) {
            for (int i = 0; i < graph.getInitializerCount(); i++) {
                TensorProto t = graph.getInitializer(i);
                if (t.getRawData().size() < 1024) {
                    continue;
                }
                long aligned = (offset + 4095) / 4096 * 4096;
                out.write(new byte[(int) (aligned - offset)]);
                t.getRawData().writeTo(out);
                graph.setInitializer(i, t.toBuilder().clearRawData().setDataLocation(TensorProto.DataLocation.EXTERNAL)
                        .addExternalData(entry("location", "weights.bin"))
                        .addExternalData(entry("offset", Long.toString(aligned)))
                        .addExternalData(entry("length", Integer.toString(t.getRawData().size()))).build());
                offset = aligned + t.getRawData().size();
            }
        }
        Path model2 = dir.resolve("model.onnx");
        Files.write(model2, model.toBuilder().setGraph(graph).build().toByteArray());
        return model2;
    }

    private static StringStringEntryProto entry(String key, String value) {
        return StringStringEntryProto.newBuilder().setKey(key).setValue(value).build();
    }

    /** A file of the shared folder: skipped with a message where it is missing, but a failure on CI. */
    static Path requireShared(String relative) {
        Path p = Shared.root().resolve(relative);
        if (!Files.exists(p) && "true".equals(System.getenv("CI"))) {
            fail(p + " is missing; CI runs with the shared folder beside the repository, so this test must run there");
        }
        return Shared.require(relative);
    }
}
