package dev.kvq.runtime.onnx.graph;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.runtime.onnx.graph.proto.GraphProto;
import dev.kvq.runtime.onnx.graph.proto.TensorProto;
import dev.kvq.runtime.onnx.graph.proto.TensorShapeProto;
import dev.kvq.runtime.onnx.graph.proto.TypeProto;
import dev.kvq.runtime.onnx.graph.proto.ValueInfoProto;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeSet;

/**
 * The KV interface of an exported decoder, checked against a {@link QuantizedPastLayout}: inputs
 * {@code past_key_values.{l}.key/value} {@code [B, H, P, D]} and outputs {@code present.{l}.key/value}
 * {@code [B, H, P + t, D]} for every layer, all of one float type.
 *
 * @param kvType the element type of the past and present (float32 or float16)
 * @param batch the batch dim of the past inputs, reused for the inputs that replace them
 * @param newTokens the dim of the new tokens ({@code input_ids}' second dim when it has one)
 */
record KvSignature(int kvType, TensorShapeProto.Dimension batch, TensorShapeProto.Dimension newTokens) {
    static String pastName(int layer, String kind) {
        return "past_key_values." + layer + "." + kind;
    }

    static String presentName(int layer, String kind) {
        return "present." + layer + "." + kind;
    }

    /** Reads and checks the graph's KV inputs and outputs; a model that does not fit gets {@code MODEL_INVALID}. */
    static KvSignature of(GraphProto graph, QuantizedPastLayout layout, String modelName) {
        Map<String, ValueInfoProto> inputs = byName(graph.getInputList());
        Map<String, ValueInfoProto> outputs = byName(graph.getOutputList());
        int layers = layout.layers().size();
        int modelLayers = 0;
        while (inputs.containsKey(pastName(modelLayers, "key"))) {
            modelLayers++;
        }
        if (modelLayers != layers) {
            String missing = pastName(Math.min(modelLayers, layers), "key");
            throw new KvqException(ErrorCode.MODEL_INVALID, modelName + (modelLayers == 0
                    ? " has no input '" + missing + "'; a quantized past needs a decoder exported with external KV "
                    + "inputs and outputs (optimum-cli export onnx --task text-generation-with-past); its inputs are "
                    + new TreeSet<>(inputs.keySet())
                    : " has past_key_values inputs for " + modelLayers + " layers but the quantized past describes "
                    + layers + "; build the layout from this model's config.json"));
        }
        Integer kvType = null;
        TensorShapeProto.Dimension batch = null;
        for (int l = 0; l < layers; l++) {
            for (String kind : new String[] {"key", "value"}) {
                TypeProto.Tensor past = kvTensor(inputs, pastName(l, kind), layout, modelName, "input");
                kvTensor(outputs, presentName(l, kind), layout, modelName, "output");
                if (kvType != null && past.getElemType() != kvType) {
                    throw new KvqException(ErrorCode.MODEL_INVALID, modelName + " mixes float16 and float32 past inputs ("
                            + pastName(l, kind) + "); re-export it with one KV dtype");
                }
                kvType = past.getElemType();
                batch = batch != null ? batch : past.getShape().getDim(0);
            }
        }
        TensorShapeProto.Dimension tokens = TensorShapeProto.Dimension.newBuilder().setDimParam("new_tokens").build();
        ValueInfoProto ids = inputs.get("input_ids");
        if (ids != null && ids.getType().getTensorType().getShape().getDimCount() == 2) {
            tokens = ids.getType().getTensorType().getShape().getDim(1);
        }
        return new KvSignature(kvType, batch, tokens);
    }

    /** The tensor type of KV input or output {@code name}, which must be float [B, H, P, D] with the layout's H and D. */
    private static TypeProto.Tensor kvTensor(Map<String, ValueInfoProto> values, String name, QuantizedPastLayout layout,
                                             String modelName, String what) {
        ValueInfoProto value = values.get(name);
        if (value == null) {
            throw new KvqException(ErrorCode.MODEL_INVALID, modelName + " has no " + what + " '" + name + "'; a quantized "
                    + "past needs a decoder exported with external KV inputs and outputs (optimum-cli export onnx --task "
                    + "text-generation-with-past) that returns every layer's present K/V");
        }
        TypeProto.Tensor t = value.getType().getTensorType();
        int type = t.getElemType();
        if (type != TensorProto.DataType.FLOAT_VALUE && type != TensorProto.DataType.FLOAT16_VALUE) {
            throw new KvqException(ErrorCode.MODEL_INVALID, modelName + " " + what + " '" + name + "' has element type "
                    + type + "; a quantized past is read as float32 or float16 K/V: re-export the model with one of them");
        }
        int rank = t.getShape().getDimCount();
        if (rank != 4) {
            throw new KvqException(ErrorCode.MODEL_INVALID, modelName + " " + what + " '" + name + "' has " + rank
                    + " dims; kvq needs K/V laid out [batch, kv_heads, tokens, head_dim]: re-export with Optimum's "
                    + "text-generation-with-past layout");
        }
        check(t, 1, layout.kvHeads(), name, modelName, what, "KV heads");
        check(t, 3, layout.headDim(), name, modelName, what, "head_dim");
        TensorShapeProto.Dimension tokens = t.getShape().getDim(2);
        if (tokens.hasDimValue()) {
            // a fixed axis 2 is either heads ([B, P, H, D]) or a static past length: neither takes T + R positions
            throw new KvqException(ErrorCode.MODEL_INVALID, modelName + " " + what + " '" + name + "' has a fixed "
                    + tokens.getDimValue() + " on axis 2, where kvq needs the varying number of tokens: re-export with "
                    + "K/V laid out [batch, kv_heads, tokens, head_dim] and dynamic sequence axes");
        }
        return t;
    }

    private static void check(TypeProto.Tensor t, int axis, int expected, String name, String modelName, String what,
                              String meaning) {
        TensorShapeProto.Dimension d = t.getShape().getDim(axis);
        if (d.hasDimValue() && d.getDimValue() != expected) {
            throw new KvqException(ErrorCode.MODEL_INVALID, modelName + " " + what + " '" + name + "' has " + d.getDimValue()
                    + " on axis " + axis + " where the quantized past has " + expected + " " + meaning + "; kvq needs "
                    + "K/V laid out [batch, kv_heads, tokens, head_dim] from the model the layout was made for");
        }
    }

    private static Map<String, ValueInfoProto> byName(Iterable<ValueInfoProto> values) {
        Map<String, ValueInfoProto> map = new HashMap<>();
        for (ValueInfoProto v : values) {
            map.put(v.getName(), v);
        }
        return map;
    }
}
