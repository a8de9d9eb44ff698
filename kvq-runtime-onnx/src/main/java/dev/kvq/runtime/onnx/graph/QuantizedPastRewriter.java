package dev.kvq.runtime.onnx.graph;

import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import com.google.protobuf.CodedInputStream;
import com.google.protobuf.InvalidProtocolBufferException;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.StoredLayer;
import dev.kvq.generate.spi.StoredRun;
import dev.kvq.runtime.onnx.graph.proto.GraphProto;
import dev.kvq.runtime.onnx.graph.proto.NodeProto;
import dev.kvq.runtime.onnx.nativeapi.AttentionSpec;
import dev.kvq.runtime.onnx.graph.proto.ModelProto;
import dev.kvq.runtime.onnx.graph.proto.OperatorSetIdProto;
import dev.kvq.runtime.onnx.graph.proto.TensorProto;
import dev.kvq.runtime.onnx.graph.proto.TensorShapeProto;
import dev.kvq.runtime.onnx.graph.proto.TypeProto;
import dev.kvq.runtime.onnx.graph.proto.ValueInfoProto;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * Rewrites an Optimum-exported decoder so that it reads kvq's quantized history ({@link QuantizedPastLayout}) instead
 * of a dense past, for placement {@code device}:
 * <ul>
 *   <li>each input {@code past_key_values.{l}.{key,value}} gives way to the layout's codes, scales and zeros of every
 *       run and the residual ({@link QuantizedPastLayout#codesName} ...), in {@link
 *       dev.kvq.generate.spi.QuantizedStep#tensorOrder()} order;</li>
 *   <li>nodes placed before all others dequantize them to exactly kvq's float32 values ({@link RunDecoder}), join the
 *       runs along heads and the residual along tokens, round once to the model's KV dtype and name the result
 *       {@code past_key_values.{l}.{kind}}, so every consumer, including those in {@code If} branches of merged
 *       decoders, reads it unchanged;</li>
 *   <li>outputs {@code present.{l}.{kind}} give way to {@code kvq.{l}.{kind}.new} ({@link QuantizedPastLayout#newName}),
 *       the present's tokens after the past: only the new tokens' K/V leave the graph.</li>
 * </ul>
 * <ul>
 *   <li>input {@code attention_mask} gives way to {@code kvq.quantized_tokens} and {@code kvq.residual_tokens}
 *       (int64 {@code [B]}: how many of the quantized and residual positions of each sequence are real) and
 *       {@code kvq.new_mask} (the new tokens' part, {@code [B, t]}); the graph builds the whole mask ({@code T +
 *       residualCapacity + t} positions) from them, so what a step hands over does not grow with the history.</li>
 * </ul>
 * {@code input_ids}, {@code position_ids}, {@code use_cache_branch} and {@code logits} stay as they are; a merged
 * decoder's {@code use_cache_branch} must be true whenever the past is not empty.
 *
 * <p>{@link #rewriteFused} goes one step further where a layer's attention core has the expected shape ({@link
 * AttentionFuser}): kvq's attention operator ({@link AttentionSpec}) takes the core's place and reads the codes itself,
 * and the nodes nothing then needs (the dequantizing nodes, the presents, the repetition of heads) are dropped.
 *
 * <p>Initializers are not touched, so a model whose weights are external data (over 2 GB) is rewritten without reading
 * them; its session must be created from the returned bytes with {@link #useModelFolder} so ONNX Runtime finds them.
 */
public final class QuantizedPastRewriter {
    /** ONNX Runtime's session config key for the folder of external initializers of a model loaded from bytes. */
    public static final String EXTERNAL_INITIALIZERS_FOLDER = "session.model_external_initializers_file_folder_path";
    /** ONNX's default operator set: Div, Mul and Sub accept uint8 from version 14. */
    private static final int UINT8_ARITHMETIC_OPSET = 14;
    /** Slice with its bounds as inputs, which the decode uses, exists from version 10. */
    private static final int MINIMUM_OPSET = 10;
    private static final String[] KINDS = {"key", "value"};

    private QuantizedPastRewriter() {
    }

    /**
     * Reads the model at {@code model} (external data, if any, stays unread) and returns the rewritten model's bytes,
     * for {@link ai.onnxruntime.OrtEnvironment#createSession(byte[], OrtSession.SessionOptions)}.
     *
     * @throws KvqException {@code MODEL_INVALID} when the file is no ONNX model or its KV inputs and outputs do not fit
     *     the layout; {@code ILLEGAL_ARGUMENT} or {@code UNSUPPORTED} for a layout the graph cannot decode
     */
    public static byte[] rewrite(Path model, QuantizedPastLayout layout) {
        return rewrite(read(model), layout, String.valueOf(model.getFileName()), null).model().toByteArray();
    }

    private static ModelProto read(Path model) {
        try (InputStream in = Files.newInputStream(model)) {
            CodedInputStream coded = CodedInputStream.newInstance(in);
            coded.setSizeLimit(Integer.MAX_VALUE);
            return ModelProto.parseFrom(coded);
        } catch (InvalidProtocolBufferException e) {
            throw new KvqException(ErrorCode.MODEL_INVALID, model + " is not a readable ONNX model: " + e.getMessage(), e);
        } catch (IOException e) {
            throw new KvqException(ErrorCode.IO, "cannot read " + model + ": " + e.getMessage(), e);
        }
    }

    /** The rewritten model; see {@link #rewrite(Path, QuantizedPastLayout)}. */
    public static ModelProto rewrite(ModelProto model, QuantizedPastLayout layout) {
        return rewrite(model, layout, "the model", null).model();
    }

    /**
     * A rewritten model whose layers attend through kvq's operators ({@link AttentionSpec}) where their attention
     * core has the expected shape ({@link AttentionFuser}), and whose other layers dequantize before attention.
     *
     * @param model the model's bytes, rewritten
     * @param dequantizing the model rewritten with every layer dequantizing before attention ({@link
     *     #rewrite(Path, QuantizedPastLayout)}'s result, from the same reading of the file; the same array as {@code
     *     model} when no layer took an operator)
     * @param operators the operators the model uses, one per layer that attends through one, all in {@code domain},
     *     for {@link dev.kvq.runtime.onnx.nativeapi.CustomOps} to register; empty when no layer could take one
     */
    public record Fused(byte[] model, byte[] dequantizing, List<AttentionSpec> operators) {
    }

    /**
     * Like {@link #rewrite(Path, QuantizedPastLayout)}, with attention over the codes in place: see {@link Fused}.
     *
     * @param queryHeads the model's attention heads (a multiple of the layout's KV heads)
     * @param domain the operator domain to put kvq's operators in, unique per session options
     * @param cuda whether the operators run on CUDA, whose kernel takes fewer shapes than the CPU's
     */
    public static Fused rewriteFused(Path model, QuantizedPastLayout layout, int queryHeads, String domain,
                                     boolean cuda) {
        ModelProto proto = read(model);
        String name = String.valueOf(model.getFileName());
        Rewritten r = rewrite(proto, layout, name, new Fusion(domain, queryHeads, cuda));
        byte[] fused = r.model().toByteArray();
        byte[] dequantizing = r.operators().isEmpty() ? fused
                : rewrite(proto, layout, name, null).model().toByteArray();
        return new Fused(fused, dequantizing, r.operators());
    }

    /** The rewritten model; see {@link #rewriteFused(Path, QuantizedPastLayout, int, String, boolean)}. */
    static Rewritten rewriteFused(ModelProto model, QuantizedPastLayout layout, int queryHeads, String domain,
                                  boolean cuda) {
        return rewrite(model, layout, "the model", new Fusion(domain, queryHeads, cuda));
    }

    record Rewritten(ModelProto model, List<AttentionSpec> operators) {
    }

    private record Fusion(String domain, int queryHeads, boolean cuda) {
    }

    /**
     * Points a session created from rewritten bytes at the folder of {@code model}, where ONNX Runtime looks for
     * external data files (their {@code location} is relative to the model's folder). Harmless for a model without
     * external data.
     */
    public static void useModelFolder(OrtSession.SessionOptions options, Path model) throws OrtException {
        Path folder = model.toAbsolutePath().getParent();
        options.addConfigEntry(EXTERNAL_INITIALIZERS_FOLDER, folder.toString());
    }

    private static Rewritten rewrite(ModelProto model, QuantizedPastLayout layout, String modelName, Fusion fusion) {
        layout.check();
        GraphProto graph = model.getGraph();
        KvSignature kv = KvSignature.of(graph, layout, modelName);
        int opset = defaultOpset(model, modelName);
        AttentionFuser fuser = fusion == null ? null : new AttentionFuser(graph, kv.kvType(), opset);
        List<AttentionSpec> operators = new ArrayList<>();
        Map<String, NodeProto> replaced = new HashMap<>();
        Map<String, String> pastShapes = new HashMap<>();
        int integerType = opset >= UINT8_ARITHMETIC_OPSET ? TensorProto.DataType.UINT8_VALUE
                : TensorProto.DataType.INT32_VALUE;

        NodeEmitter before = new NodeEmitter();
        NodeEmitter after = new NodeEmitter();
        RunDecoder decoder = new RunDecoder(before, layout.headDim(), layout.tokenBlock(), integerType, kv.kvType());
        ValueTypes types = new ValueTypes(layout, kv);
        List<ValueInfoProto> pastInputs = new ArrayList<>();
        Set<String> pastNames = new HashSet<>();
        Map<String, String> newNames = new HashMap<>();
        for (int l = 0; l < layout.layers().size(); l++) {
            StoredLayer stored = layout.layers().get(l);
            for (String kind : KINDS) {
                List<StoredRun> runs = kind.equals("key") ? stored.keys() : stored.values();
                List<String> heads = new ArrayList<>();
                for (int r = 0; r < runs.size(); r++) {
                    StoredRun run = runs.get(r);
                    String codes = QuantizedPastLayout.codesName(l, kind, r);
                    String scales = QuantizedPastLayout.scalesName(l, kind, r);
                    String zeros = QuantizedPastLayout.zerosName(l, kind, r);
                    pastInputs.add(types.codes(codes, run));
                    if (!run.raw()) {
                        pastInputs.add(types.params(scales, run));
                        pastInputs.add(types.params(zeros, run));
                    }
                    heads.add(decoder.decode("l" + l + "." + kind + ".run" + r, run, codes, scales, zeros));
                }
                String past = assemblePast(before, "l" + l + "." + kind, heads, stored.residualCapacity() > 0
                        ? QuantizedPastLayout.residualName(l, kind) : null);
                before.rename(past, KvSignature.pastName(l, kind));
                pastNames.add(KvSignature.pastName(l, kind));
                newNames.put(KvSignature.presentName(l, kind), QuantizedPastLayout.newName(l, kind));
            }
            if (stored.residualCapacity() > 0) {
                for (String kind : KINDS) {
                    pastInputs.add(types.residual(QuantizedPastLayout.residualName(l, kind), stored.residualCapacity()));
                }
            }
            Optional<AttentionFuser.Core> core = fuser == null ? Optional.empty() : fuser.match(l);
            if (core.isPresent() && fusion.queryHeads() % layout.kvHeads() == 0 && AttentionSpec.supported(
                    fusion.queryHeads() / layout.kvHeads(), layout.headDim(), stored.keys(), stored.values(), fusion.cuda())) {
                AttentionFuser.Core c = core.get();
                AttentionSpec spec = new AttentionSpec("Attention" + operators.size(), layout.kvHeads(),
                        fusion.queryHeads() / layout.kvHeads(), layout.headDim(), c.scale(),
                        kv.kvType() == TensorProto.DataType.FLOAT16_VALUE, stored.keys(), stored.values(),
                        stored.residualCapacity(), layout.tokenBlock());
                operators.add(spec);
                replaced.put(c.output().getOutput(0), attentionNode(fusion.domain(), spec, l, c));
                for (String kind : KINDS) {
                    after.rename(after.op("l" + l + "." + kind + ".new", "Identity", List.of(
                            kind.equals("key") ? c.newKey() : c.newValue())), QuantizedPastLayout.newName(l, kind));
                    pastShapes.put(KvSignature.pastName(l, kind), pastShape(before, layout, l, kind));
                }
            } else {
                for (String kind : KINDS) {
                    emitNewTokens(after, l, kind);
                }
            }
        }

        List<ValueInfoProto> maskInputs = buildMask(before, graph, layout, kv, opset);
        GraphProto.Builder g = graph.toBuilder().clearInput().clearOutput().clearNode();
        boolean placed = false;
        for (ValueInfoProto input : graph.getInputList()) {
            if (input.getName().equals(MASK)) {
                g.addAllInput(maskInputs);
            } else if (!pastNames.contains(input.getName())) {
                g.addInput(input);
            } else if (!placed) {
                // the quantized inputs take the place of the first past input, all together in the layout's order
                g.addAllInput(pastInputs);
                placed = true;
            }
        }
        List<NodeProto> nodes = new ArrayList<>(before.nodes());
        for (NodeProto node : graph.getNodeList()) {
            nodes.add(fused(node, replaced, pastShapes));
        }
        nodes.addAll(after.nodes());
        for (ValueInfoProto output : graph.getOutputList()) {
            String replacement = newNames.get(output.getName());
            g.addOutput(replacement == null ? output : types.newTokens(replacement));
        }
        ModelProto.Builder out = model.toBuilder();
        if (!operators.isEmpty()) {
            Set<String> outputs = new HashSet<>();
            g.getOutputList().forEach(o -> outputs.add(o.getName()));
            nodes = AttentionFuser.withoutDeadNodes(nodes, outputs);
            Set<String> produced = new HashSet<>();
            nodes.forEach(n -> produced.addAll(n.getOutputList()));
            List<ValueInfoProto> kept = g.getValueInfoList().stream().filter(v -> produced.contains(v.getName()))
                    .toList();
            g.clearValueInfo().addAllValueInfo(kept);
            out.addOpsetImport(OperatorSetIdProto.newBuilder().setDomain(fusion.domain()).setVersion(1));
        }
        g.addAllNode(nodes);
        return new Rewritten(out.setGraph(g).build(), List.copyOf(operators));
    }

    /** {@code node}, or kvq's operator in its place, or, for {@code Shape(past)}, the past's shape computed. */
    private static NodeProto fused(NodeProto node, Map<String, NodeProto> replaced, Map<String, String> pastShapes) {
        if (node.getOutputCount() > 0 && replaced.containsKey(node.getOutput(0))) {
            return replaced.get(node.getOutput(0));
        }
        if (node.getOpType().equals("Shape") && node.getAttributeCount() == 0 && node.getInputCount() == 1
                && pastShapes.containsKey(node.getInput(0))) {
            return node.toBuilder().setOpType("Identity").setInput(0, pastShapes.get(node.getInput(0))).build();
        }
        return node;
    }

    /** The node of kvq's operator for layer {@code layer}, yielding the attention where the core's MatMul did. */
    private static NodeProto attentionNode(String domain, AttentionSpec spec, int layer, AttentionFuser.Core core) {
        NodeProto.Builder node = NodeProto.newBuilder().setName("kvq/l" + layer + "/attention").setDomain(domain)
                .setOpType(spec.name()).addInput(core.query()).addInput(core.newKey()).addInput(core.newValue())
                .addInput(core.bias());
        for (String kind : KINDS) {
            List<StoredRun> runs = kind.equals("key") ? spec.keys() : spec.values();
            for (int r = 0; r < runs.size(); r++) {
                node.addInput(QuantizedPastLayout.codesName(layer, kind, r));
                if (!runs.get(r).raw()) {
                    node.addInput(QuantizedPastLayout.scalesName(layer, kind, r));
                    node.addInput(QuantizedPastLayout.zerosName(layer, kind, r));
                }
            }
        }
        if (spec.residualCapacity() > 0) {
            node.addInput(QuantizedPastLayout.residualName(layer, "key"));
            node.addInput(QuantizedPastLayout.residualName(layer, "value"));
        }
        return node.addOutput(core.output().getOutput(0)).addOutput("kvq/l" + layer + "/attention:scratch").build();
    }

    /**
     * {@code [B, kvHeads, T + R, D]}, the shape of the past the dequantizing nodes would build, from the first run's
     * codes: what {@code Shape(past)} gives without computing the past.
     */
    private static String pastShape(NodeEmitter emit, QuantizedPastLayout layout, int layer, String kind) {
        String scope = "l" + layer + "." + kind + ".shape";
        String codes = emit.shape(scope, QuantizedPastLayout.codesName(layer, kind, 0));
        String batch = emit.op(scope, "Gather", List.of(codes, emit.int64s(scope, 1)));
        String tokens = emit.op(scope, "Gather", List.of(codes, emit.int64s(scope, 0)));
        int residual = layout.layers().get(layer).residualCapacity();
        if (residual > 0) {
            tokens = emit.op(scope, "Add", List.of(tokens, emit.int64s(scope, residual)));
        }
        return emit.concat(scope, List.of(batch, emit.int64s(scope, layout.kvHeads()), tokens,
                emit.int64s(scope, layout.headDim())), 0);
    }

    static final String MASK = "attention_mask";
    /** Real quantized positions per sequence, int64 {@code [B]}. */
    public static final String QUANTIZED_TOKENS = "kvq.quantized_tokens";
    /** Real residual positions per sequence, int64 {@code [B]}. */
    public static final String RESIDUAL_TOKENS = "kvq.residual_tokens";
    /** The new tokens' part of the attention mask, int64 {@code [B, t]}. */
    public static final String NEW_MASK = "kvq.new_mask";

    /**
     * Emits {@code attention_mask = [i < q_b for i < T] ++ [i < r_b for i < R] ++ new_mask} (a sequence's quantized
     * tokens and residual fill the first slots of their regions) and returns the inputs that replace the mask.
     */
    private static List<ValueInfoProto> buildMask(NodeEmitter emit, GraphProto graph, QuantizedPastLayout layout,
                                                  KvSignature kv, int opset) {
        ValueInfoProto original = graph.getInputList().stream().filter(i -> i.getName().equals(MASK)).findFirst()
                .orElseThrow(() -> new KvqException(ErrorCode.MODEL_INVALID, "the model has no input '" + MASK
                        + "'; kvq needs Optimum's text-generation-with-past inputs"));
        int maskType = original.getType().getTensorType().getElemType();
        String scope = "mask";
        String codes = QuantizedPastLayout.codesName(0, "key", 0);
        String tokens = emit.op(scope, "Gather", List.of(emit.shape(scope, codes), emit.scalarInt64(scope, 0)));
        String quantized = positions(emit, scope, emit.op(scope, "Range", List.of(emit.scalarInt64(scope, 0), tokens,
                emit.scalarInt64(scope, 1))), QUANTIZED_TOKENS, opset);
        List<String> parts = new ArrayList<>(List.of(quantized));
        List<ValueInfoProto> inputs = new ArrayList<>();
        inputs.add(ValueTypes.value(QUANTIZED_TOKENS, TensorProto.DataType.INT64_VALUE, kv.batch()));
        int residual = layout.layers().getFirst().residualCapacity();
        if (residual > 0) {
            long[] range = new long[residual];
            for (int i = 0; i < residual; i++) {
                range[i] = i;
            }
            parts.add(positions(emit, scope, emit.int64s(scope, range), RESIDUAL_TOKENS, opset));
            inputs.add(ValueInfoProto.newBuilder(ValueTypes.value(RESIDUAL_TOKENS, TensorProto.DataType.INT64_VALUE,
                    kv.batch())).build());
        }
        String fresh = NEW_MASK;
        if (maskType != TensorProto.DataType.INT64_VALUE) {
            fresh = emit.cast(scope, NEW_MASK, TensorProto.DataType.INT64_VALUE);
        }
        parts.add(fresh);
        inputs.add(ValueTypes.value(NEW_MASK, TensorProto.DataType.INT64_VALUE, kv.batch(), kv.newTokens()));
        String mask = emit.concat(scope, parts, 1);
        if (maskType != TensorProto.DataType.INT64_VALUE) {
            mask = emit.cast(scope, mask, maskType);
        }
        emit.rename(mask, MASK);
        return inputs;
    }

    /** {@code [B, n]} int64: 1 where position {@code range[i] < count[b]}. */
    private static String positions(NodeEmitter emit, String scope, String range, String count, int opset) {
        String row = emit.unsqueeze(scope, range, 0, opset);
        String column = emit.unsqueeze(scope, count, 1, opset);
        return emit.cast(scope, emit.op(scope, "Less", List.of(row, column)), TensorProto.DataType.INT64_VALUE);
    }

    /** Runs ({@code [B, h, T, D]} in the model's KV type) joined along heads, then the residual along tokens. */
    private static String assemblePast(NodeEmitter emit, String scope, List<String> runs, String residual) {
        String past = runs.size() == 1 ? runs.getFirst() : emit.concat(scope, runs, 1);
        return residual == null ? past : emit.concat(scope, List.of(past, residual), 2);
    }

    /** {@code kvq.{l}.{kind}.new = present[:, :, P:, :]}, P being the length of the past the graph computed. */
    private static void emitNewTokens(NodeEmitter emit, int layer, String kind) {
        String scope = "l" + layer + "." + kind + ".new";
        String pastLength = emit.op(scope, "Gather", List.of(emit.shape(scope, KvSignature.pastName(layer, kind)),
                emit.int64s(scope, 2)));
        String tokens = emit.op(scope, "Slice", List.of(KvSignature.presentName(layer, kind), pastLength,
                emit.int64s(scope, Long.MAX_VALUE), emit.int64s(scope, 2)));
        emit.rename(tokens, QuantizedPastLayout.newName(layer, kind));
    }

    /** The version of the default ONNX domain the model imports. */
    private static int defaultOpset(ModelProto model, String modelName) {
        for (OperatorSetIdProto set : model.getOpsetImportList()) {
            if (set.getDomain().isEmpty() || set.getDomain().equals("ai.onnx")) {
                if (set.getVersion() < MINIMUM_OPSET) {
                    throw new KvqException(ErrorCode.MODEL_INVALID, modelName + " imports ONNX opset " + set.getVersion()
                            + "; reading a quantized past needs opset " + MINIMUM_OPSET + " or later (14 or later "
                            + "decodes in uint8): re-export it with a newer opset");
                }
                return (int) set.getVersion();
            }
        }
        throw new KvqException(ErrorCode.MODEL_INVALID, modelName + " imports no version of the default ONNX operator set");
    }

    /** Types of the rewritten graph's new inputs and outputs. */
    private record ValueTypes(QuantizedPastLayout layout, KvSignature kv) {
        /** Tokens of quantized storage ({@code T}), shared by every run of every layer. */
        private static final String TOKENS = "kvq_tokens";

        ValueInfoProto codes(String name, StoredRun run) {
            if (run.raw()) {
                int type = run.bits() == 16 ? TensorProto.DataType.FLOAT16_VALUE : TensorProto.DataType.FLOAT_VALUE;
                return value(name, type, param(TOKENS), kv.batch(), fixed(run.heads()), fixed(layout.headDim()));
            }
            return value(name, TensorProto.DataType.UINT8_VALUE, param(TOKENS), kv.batch(), fixed(run.heads()),
                    fixed(run.rowBytes(layout.headDim())));
        }

        ValueInfoProto params(String name, StoredRun run) {
            int type = run.halfParams() ? TensorProto.DataType.FLOAT16_VALUE : TensorProto.DataType.FLOAT_VALUE;
            TensorShapeProto.Dimension rows = run.axis() == StoredRun.GroupAxis.TOKEN || run.groupSize() == 1
                    ? param(TOKENS) : param(TOKENS + "_div_" + run.groupSize());
            return value(name, type, rows, kv.batch(), fixed(run.heads()), fixed(run.paramsPerRow(layout.headDim())));
        }

        ValueInfoProto residual(String name, int capacity) {
            return value(name, kv.kvType(), kv.batch(), fixed(layout.kvHeads()), fixed(capacity),
                    fixed(layout.headDim()));
        }

        /** The output of the new tokens' keys or values, {@code [B, H, t, D]}. */
        ValueInfoProto newTokens(String name) {
            return value(name, kv.kvType(), kv.batch(), fixed(layout.kvHeads()), kv.newTokens(), fixed(layout.headDim()));
        }

        static ValueInfoProto value(String name, int type, TensorShapeProto.Dimension... dims) {
            TensorShapeProto.Builder shape = TensorShapeProto.newBuilder();
            for (TensorShapeProto.Dimension d : dims) {
                shape.addDim(d);
            }
            return ValueInfoProto.newBuilder().setName(name).setType(TypeProto.newBuilder().setTensorType(
                    TypeProto.Tensor.newBuilder().setElemType(type).setShape(shape))).build();
        }

        private static TensorShapeProto.Dimension fixed(long value) {
            return TensorShapeProto.Dimension.newBuilder().setDimValue(value).build();
        }

        private static TensorShapeProto.Dimension param(String name) {
            return TensorShapeProto.Dimension.newBuilder().setDimParam(name).build();
        }
    }
}
