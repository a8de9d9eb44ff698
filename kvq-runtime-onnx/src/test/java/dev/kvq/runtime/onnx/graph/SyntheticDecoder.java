package dev.kvq.runtime.onnx.graph;

import com.google.protobuf.ByteString;
import dev.kvq.runtime.onnx.graph.proto.AttributeProto;
import dev.kvq.runtime.onnx.graph.proto.GraphProto;
import dev.kvq.runtime.onnx.graph.proto.ModelProto;
import dev.kvq.runtime.onnx.graph.proto.NodeProto;
import dev.kvq.runtime.onnx.graph.proto.OperatorSetIdProto;
import dev.kvq.runtime.onnx.graph.proto.TensorProto;
import dev.kvq.runtime.onnx.graph.proto.TensorShapeProto;
import dev.kvq.runtime.onnx.graph.proto.TypeProto;
import dev.kvq.runtime.onnx.graph.proto.ValueInfoProto;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;

/**
 * A decoder-shaped ONNX model with Optimum's KV interface and any head_dim (the tiny fixtures have 16, too few for
 * planar 4- and 2-bit rows): {@code present.{l}.{kind} = Concat(past, input_ids * w_{l,kind})} along tokens, and
 * logits from the ids alone (the mask is an input nothing reads). Built here with plain protobuf builders,
 * independent of the code under test.
 */
final class SyntheticDecoder {
    private SyntheticDecoder() {
    }

    static ModelProto build(int layers, int heads, int dim, int kvType, int opset) {
        return build(layers, heads, dim, kvType, opset, TensorProto.DataType.INT64_VALUE);
    }

    /** As {@link #build(int, int, int, int, int)} with an {@code attention_mask} of element type {@code maskType}. */
    static ModelProto build(int layers, int heads, int dim, int kvType, int opset, int maskType) {
        GraphProto.Builder g = GraphProto.newBuilder().setName("synthetic");
        g.addInput(value("input_ids", TensorProto.DataType.INT64_VALUE, "batch", "sequence"));
        g.addInput(value("attention_mask", maskType, "batch", "total"));
        g.addNode(node("Cast", List.of("input_ids"), "ids", attribute("to", TensorProto.DataType.FLOAT_VALUE)));
        g.addNode(constant("ids_shape", TensorProto.DataType.INT64_VALUE, new long[] {4}, longs(0, 1, -1, 1)));
        g.addNode(node("Reshape", List.of("ids", "ids_shape"), "ids4"));
        g.addNode(constant("logits_shape", TensorProto.DataType.INT64_VALUE, new long[] {3}, longs(0, 0, 1)));
        g.addNode(node("Reshape", List.of("ids", "logits_shape"), "logits"));
        g.addOutput(value("logits", TensorProto.DataType.FLOAT_VALUE, "batch", "sequence", 1));
        for (int l = 0; l < layers; l++) {
            for (String kind : new String[] {"key", "value"}) {
                String past = "past_key_values." + l + "." + kind;
                String tag = l + "_" + kind;
                g.addInput(value(past, kvType, "batch", heads, "past", dim));
                float[] w = new float[heads * dim];
                for (int i = 0; i < w.length; i++) {
                    w[i] = (float) Math.sin(1 + i + 7 * l + (kind.equals("key") ? 0 : 3)) / 16;
                }
                g.addNode(constant("w_" + tag, TensorProto.DataType.FLOAT_VALUE, new long[] {1, heads, 1, dim}, floats(w)));
                g.addNode(node("Mul", List.of("ids4", "w_" + tag), "new_" + tag));
                String fresh = "new_" + tag;
                if (kvType != TensorProto.DataType.FLOAT_VALUE) {
                    g.addNode(node("Cast", List.of(fresh), "new_cast_" + tag, attribute("to", kvType)));
                    fresh = "new_cast_" + tag;
                }
                g.addNode(node("Concat", List.of(past, fresh), "present." + l + "." + kind, attribute("axis", 2)));
                g.addOutput(value("present." + l + "." + kind, kvType, "batch", heads, "total", dim));
            }
        }
        return ModelProto.newBuilder().setIrVersion(8).setProducerName("kvq test")
                .addOpsetImport(OperatorSetIdProto.newBuilder().setDomain("").setVersion(opset)).setGraph(g).build();
    }

    private static NodeProto node(String op, List<String> inputs, String output, AttributeProto... attributes) {
        return NodeProto.newBuilder().setOpType(op).setName(output + "_node").addAllInput(inputs).addOutput(output)
                .addAllAttribute(List.of(attributes)).build();
    }

    private static NodeProto constant(String output, int type, long[] dims, byte[] data) {
        TensorProto.Builder t = TensorProto.newBuilder().setDataType(type).setRawData(ByteString.copyFrom(data));
        for (long d : dims) {
            t.addDims(d);
        }
        return node("Constant", List.of(), output, AttributeProto.newBuilder().setName("value")
                .setType(AttributeProto.AttributeType.TENSOR).setT(t).build());
    }

    private static AttributeProto attribute(String name, long value) {
        return AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INT).setI(value).build();
    }

    /** A tensor value; each dim is a String (symbolic) or a Number (fixed). */
    static ValueInfoProto value(String name, int type, Object... dims) {
        TensorShapeProto.Builder shape = TensorShapeProto.newBuilder();
        for (Object d : dims) {
            shape.addDim(d instanceof Number n ? TensorShapeProto.Dimension.newBuilder().setDimValue(n.longValue())
                    : TensorShapeProto.Dimension.newBuilder().setDimParam((String) d));
        }
        return ValueInfoProto.newBuilder().setName(name).setType(TypeProto.newBuilder().setTensorType(
                TypeProto.Tensor.newBuilder().setElemType(type).setShape(shape))).build();
    }

    private static byte[] longs(long... values) {
        ByteBuffer b = ByteBuffer.allocate(values.length * 8).order(ByteOrder.LITTLE_ENDIAN);
        for (long v : values) {
            b.putLong(v);
        }
        return b.array();
    }

    private static byte[] floats(float... values) {
        ByteBuffer b = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : values) {
            b.putFloat(v);
        }
        return b.array();
    }
}
