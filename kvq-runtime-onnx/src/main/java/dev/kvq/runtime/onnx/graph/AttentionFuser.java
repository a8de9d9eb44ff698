package dev.kvq.runtime.onnx.graph;

import dev.kvq.runtime.onnx.graph.proto.AttributeProto;
import dev.kvq.runtime.onnx.graph.proto.GraphProto;
import dev.kvq.runtime.onnx.graph.proto.NodeProto;
import dev.kvq.runtime.onnx.graph.proto.TensorProto;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

/**
 * Finds a layer's attention core in an exported decoder, so that kvq's operator can take its place: from the present
 * keys and values (the {@code Concat} of past and new along tokens), through the repetition of KV heads for grouped
 * queries ({@code Unsqueeze}, {@code Expand} or {@code Tile}, {@code Reshape}, same-type {@code Cast}), the keys'
 * transposition, {@code MatMul} with the query, scaling by a constant, the additive mask, {@code Softmax} over the
 * last axis, and the {@code MatMul} with the values. Anything else in between (a cast to another type, a second
 * consumer of an intermediate tensor, a computed scale) leaves the layer as it is: it then reads the history through
 * the dequantizing nodes, which is slower, not wrong.
 */
final class AttentionFuser {
    private static final Set<String> REPEAT = Set.of("Unsqueeze", "Expand", "Tile", "Reshape", "Identity", "Cast");

    private final Map<String, List<NodeProto>> consumers = new HashMap<>();
    private final Map<String, NodeProto> producers = new HashMap<>();
    private final Map<String, TensorProto> constants = new HashMap<>();
    private final int kvType;
    private final int opset;

    AttentionFuser(GraphProto graph, int kvType, int opset) {
        this.kvType = kvType;
        this.opset = opset;
        for (NodeProto node : graph.getNodeList()) {
            for (String input : node.getInputList()) {
                consumers.computeIfAbsent(input, k -> new ArrayList<>()).add(node);
            }
            for (String output : node.getOutputList()) {
                producers.put(output, node);
            }
            if (node.getOpType().equals("Constant") && node.getOutputCount() == 1) {
                for (AttributeProto a : node.getAttributeList()) {
                    if (a.getName().equals("value") && a.hasT()) {
                        constants.put(node.getOutput(0), a.getT());
                    }
                }
            }
        }
        for (TensorProto t : graph.getInitializerList()) {
            constants.put(t.getName(), t);
        }
    }

    /**
     * One layer's attention core.
     *
     * @param query the query input of the scores' MatMul, {@code [B, heads, t, D]}
     * @param bias the additive mask
     * @param scale the product of the constant factors applied to the scores
     * @param newKey the new tokens' keys, the present's second part
     * @param output the MatMul that yields the attention, {@code [B, heads, t, D]}, which the operator replaces
     */
    record Core(String query, String bias, float scale, String newKey, String newValue, NodeProto output) {
    }

    /** The attention core reading {@code present.{layer}.*}, if it has the shape described above. */
    Optional<Core> match(int layer) {
        Optional<String[]> key = present(layer, "key");
        Optional<String[]> value = present(layer, "value");
        if (key.isEmpty() || value.isEmpty()) {
            return Optional.empty();
        }
        String keys = followRepeat(key.get()[0]);
        String values = followRepeat(value.get()[0]);
        if (keys == null || values == null) {
            return Optional.empty();
        }
        NodeProto transpose = single(keys);
        if (transpose == null || !transpose.getOpType().equals("Transpose") || !perm(transpose, 0, 1, 3, 2)) {
            return Optional.empty();
        }
        float scale = 1f;
        String current = transpose.getOutput(0);
        NodeProto scores = single(current);
        while (scores != null && isConstantScaling(scores, current)) {
            scale *= factor(scores, current);
            current = scores.getOutput(0);
            scores = single(current);
        }
        if (scores == null || !scores.getOpType().equals("MatMul") || !scores.getInput(1).equals(current)) {
            return Optional.empty();
        }
        String query = scores.getInput(0);
        String bias = null;
        boolean softmax = false;
        current = scores.getOutput(0);
        NodeProto next = single(current);
        while (next != null && !softmax) {
            if (isConstantScaling(next, current)) {
                scale *= factor(next, current);
            } else if (next.getOpType().equals("Add") && bias == null) {
                bias = next.getInput(0).equals(current) ? next.getInput(1) : next.getInput(0);
            } else if (next.getOpType().equals("Softmax") && lastAxis(next)) {
                softmax = true;
            } else if (!sameTypeCast(next)) {
                return Optional.empty();
            }
            current = next.getOutput(0);
            next = single(current);
        }
        while (next != null && sameTypeCast(next)) {
            current = next.getOutput(0);
            next = single(current);
        }
        if (!softmax || bias == null || next == null || !next.getOpType().equals("MatMul") || !next.getInput(0).equals(current)
                || !next.getInput(1).equals(values)) {
            return Optional.empty();
        }
        return Optional.of(new Core(query, bias, scale, key.get()[1], value.get()[1], next));
    }

    /** {@code {present, new}} when {@code present.{layer}.{kind}} is {@code Concat(past, new)} along tokens. */
    private Optional<String[]> present(int layer, String kind) {
        String name = KvSignature.presentName(layer, kind);
        NodeProto concat = producers.get(name);
        if (concat == null || !concat.getOpType().equals("Concat") || concat.getInputCount() != 2
                || !concat.getInput(0).equals(KvSignature.pastName(layer, kind))) {
            return Optional.empty();
        }
        long axis = intAttribute(concat, "axis", Long.MIN_VALUE);
        return axis == 2 || axis == -2 ? Optional.of(new String[] {name, concat.getInput(1)}) : Optional.empty();
    }

    /**
     * The end of the chain that repeats KV heads for grouped queries (shape-only consumers aside), or null when the
     * chain repeats without first inserting the group axis right after the KV heads ({@code Unsqueeze} at axis 2):
     * only that order makes query head {@code h} read KV head {@code h / group}, as kvq's operator does.
     */
    private String followRepeat(String name) {
        String current = name;
        boolean groupAxis = false;
        while (true) {
            NodeProto next = single(current);
            if (next == null || !REPEAT.contains(next.getOpType()) || !next.getInput(0).equals(current)
                    || next.getOpType().equals("Cast") && !sameTypeCast(next)) {
                return current;
            }
            switch (next.getOpType()) {
                case "Unsqueeze" -> groupAxis = unsqueezeAxes(next).equals(List.of(2L))
                        || unsqueezeAxes(next).equals(List.of(-3L)); // -3 of the 5-d result is axis 2
                case "Expand", "Tile" -> {
                    if (!groupAxis) {
                        return null;
                    }
                }
                default -> {
                    // Reshape, Identity and same-type Cast keep the order
                }
            }
            current = next.getOutput(0);
        }
    }

    /** An {@code Unsqueeze}'s axes: the attribute before opset 13, the constant second input from it. */
    private List<Long> unsqueezeAxes(NodeProto unsqueeze) {
        for (AttributeProto a : unsqueeze.getAttributeList()) {
            if (a.getName().equals("axes")) {
                return a.getIntsList();
            }
        }
        if (unsqueeze.getInputCount() < 2 || !constants.containsKey(unsqueeze.getInput(1))) {
            return List.of();
        }
        TensorProto t = constants.get(unsqueeze.getInput(1));
        if (t.getDataType() != TensorProto.DataType.INT64_VALUE) {
            return List.of();
        }
        if (t.getInt64DataCount() > 0) {
            return t.getInt64DataList();
        }
        ByteBuffer raw = t.getRawData().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
        List<Long> axes = new ArrayList<>();
        while (raw.remaining() >= Long.BYTES) {
            axes.add(raw.getLong());
        }
        return axes;
    }

    /** The one node reading {@code value} besides {@code Shape} nodes, or null. */
    private NodeProto single(String value) {
        NodeProto found = null;
        for (NodeProto node : consumers.getOrDefault(value, List.of())) {
            if (node.getOpType().equals("Shape")) {
                continue;
            }
            if (found != null) {
                return null;
            }
            found = node;
        }
        return found;
    }

    private boolean sameTypeCast(NodeProto node) {
        return node.getOpType().equals("Cast") && intAttribute(node, "to", -1) == kvType;
    }

    private boolean lastAxis(NodeProto softmax) {
        long axis = intAttribute(softmax, "axis", opset >= 13 ? -1 : 1);
        return axis == -1 || axis == 3;
    }

    private boolean isConstantScaling(NodeProto node, String operand) {
        if (!node.getOpType().equals("Mul") && !node.getOpType().equals("Div")) {
            return false;
        }
        if (node.getOpType().equals("Div") && !node.getInput(0).equals(operand)) {
            return false;
        }
        String other = node.getInput(0).equals(operand) ? node.getInput(1) : node.getInput(0);
        return scalar(other).isPresent();
    }

    private float factor(NodeProto node, String operand) {
        String other = node.getInput(0).equals(operand) ? node.getInput(1) : node.getInput(0);
        float c = scalar(other).orElseThrow();
        return node.getOpType().equals("Div") ? 1f / c : c;
    }

    /** The value of a one-element float, float16 or double constant. */
    private Optional<Float> scalar(String name) {
        TensorProto t = constants.get(name);
        if (t == null) {
            return Optional.empty();
        }
        long elements = 1;
        for (long d : t.getDimsList()) {
            elements *= d;
        }
        if (elements != 1) {
            return Optional.empty();
        }
        ByteBuffer raw = t.getRawData().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN);
        return switch (t.getDataType()) {
            case TensorProto.DataType.FLOAT_VALUE -> Optional.of(t.getFloatDataCount() > 0 ? t.getFloatData(0)
                    : raw.getFloat(0));
            case TensorProto.DataType.DOUBLE_VALUE -> Optional.of((float) (t.getDoubleDataCount() > 0
                    ? t.getDoubleData(0) : raw.getDouble(0)));
            case TensorProto.DataType.FLOAT16_VALUE -> Optional.of(Float.float16ToFloat(t.getInt32DataCount() > 0
                    ? (short) t.getInt32Data(0) : raw.getShort(0)));
            default -> Optional.empty();
        };
    }

    private static boolean perm(NodeProto node, long... expected) {
        for (AttributeProto a : node.getAttributeList()) {
            if (a.getName().equals("perm")) {
                if (a.getIntsCount() != expected.length) {
                    return false;
                }
                for (int i = 0; i < expected.length; i++) {
                    if (a.getInts(i) != expected[i]) {
                        return false;
                    }
                }
                return true;
            }
        }
        return false;
    }

    private static long intAttribute(NodeProto node, String name, long otherwise) {
        for (AttributeProto a : node.getAttributeList()) {
            if (a.getName().equals(name)) {
                return a.getI();
            }
        }
        return otherwise;
    }

    /**
     * {@code nodes} without those whose outputs nothing needs: not a graph output, not read by a needed node, not
     * named inside a subgraph (an {@code If} branch reads outer values by name). {@code nodes} must be in topological
     * order, which makes one backward pass enough.
     */
    static List<NodeProto> withoutDeadNodes(List<NodeProto> nodes, Set<String> graphOutputs) {
        Set<String> needed = new HashSet<>(graphOutputs);
        for (NodeProto node : nodes) {
            for (AttributeProto a : node.getAttributeList()) {
                if (a.hasG()) {
                    namesIn(a.getG(), needed);
                }
                for (GraphProto g : a.getGraphsList()) {
                    namesIn(g, needed);
                }
            }
        }
        boolean[] keep = new boolean[nodes.size()];
        for (int i = nodes.size() - 1; i >= 0; i--) {
            NodeProto node = nodes.get(i);
            for (String output : node.getOutputList()) {
                if (needed.contains(output)) {
                    keep[i] = true;
                    break;
                }
            }
            if (keep[i]) {
                needed.addAll(node.getInputList());
            }
        }
        List<NodeProto> out = new ArrayList<>();
        for (int i = 0; i < nodes.size(); i++) {
            if (keep[i]) {
                out.add(nodes.get(i));
            }
        }
        return out;
    }

    private static void namesIn(GraphProto graph, Set<String> names) {
        for (NodeProto node : graph.getNodeList()) {
            names.addAll(node.getInputList());
            for (AttributeProto a : node.getAttributeList()) {
                if (a.hasG()) {
                    namesIn(a.getG(), names);
                }
            }
        }
    }
}
