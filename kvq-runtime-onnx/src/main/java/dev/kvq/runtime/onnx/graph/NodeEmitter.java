package dev.kvq.runtime.onnx.graph;

import com.google.protobuf.ByteString;
import dev.kvq.runtime.onnx.graph.proto.AttributeProto;
import dev.kvq.runtime.onnx.graph.proto.NodeProto;
import dev.kvq.runtime.onnx.graph.proto.TensorProto;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * Appends ONNX nodes of the default domain to a list, naming every node and value it creates {@code kvq/...} so they
 * cannot collide with an exporter's names. Each method returns the name of the node's (first) output. Constants are
 * {@code Constant} nodes, not initializers, so a rewrite adds nodes only and leaves the initializers as they are.
 */
final class NodeEmitter {
    private final List<NodeProto> nodes = new ArrayList<>();
    private int counter;

    /** The nodes emitted so far, in the order they were emitted (a valid topological order). */
    List<NodeProto> nodes() {
        return List.copyOf(nodes);
    }

    /** Emits {@code opType(inputs)} with one output named after {@code scope}. */
    String op(String scope, String opType, List<String> inputs, AttributeProto... attributes) {
        String name = "kvq/" + scope + "/" + opType + "_" + counter++;
        String output = name + ":0";
        nodes.add(NodeProto.newBuilder().setName(name).setOpType(opType).addAllInput(inputs).addOutput(output)
                .addAllAttribute(List.of(attributes)).build());
        return output;
    }

    /**
     * Gives the value {@code value}, the output of the node emitted last (so nothing reads it yet), the name
     * {@code name}: how a computed tensor takes the place of a graph input that consumers refer to by name.
     */
    void rename(String value, String name) {
        int last = nodes.size() - 1;
        NodeProto node = nodes.get(last);
        if (node.getOutputCount() != 1 || !node.getOutput(0).equals(value)) {
            throw new IllegalStateException(value + " is not the output of the last node");
        }
        nodes.set(last, node.toBuilder().setOutput(0, name).build());
    }

    /** A 0-d int64 constant. */
    String scalarInt64(String scope, long value) {
        byte[] bytes = ByteBuffer.allocate(Long.BYTES).order(ByteOrder.LITTLE_ENDIAN).putLong(value).array();
        return constant(scope, TensorProto.DataType.INT64_VALUE, new long[0], bytes);
    }

    /** Inserts a dimension of 1 at {@code axis} (axes as an input from opset 13, as an attribute before). */
    String unsqueeze(String scope, String input, long axis, int opset) {
        if (opset >= 13) {
            return op(scope, "Unsqueeze", List.of(input, int64s(scope, axis)));
        }
        return op(scope, "Unsqueeze", List.of(input), AttributeProto.newBuilder().setName("axes")
                .setType(AttributeProto.AttributeType.INTS).addInts(axis).build());
    }

    String cast(String scope, String input, int to) {
        return op(scope, "Cast", List.of(input), intAttribute("to", to));
    }

    String reshape(String scope, String input, String shape) {
        return op(scope, "Reshape", List.of(input, shape));
    }

    String concat(String scope, List<String> inputs, int axis) {
        return op(scope, "Concat", inputs, intAttribute("axis", axis));
    }

    String transpose(String scope, String input, long... perm) {
        return op(scope, "Transpose", List.of(input), intsAttribute("perm", perm));
    }

    String shape(String scope, String input) {
        return op(scope, "Shape", List.of(input));
    }

    /** Elements {@code [start, end)} of a 1-D tensor (the Slice form of opset 10 and later). */
    String slice(String scope, String input, long start, long end) {
        return op(scope, "Slice", List.of(input, int64s(scope, start), int64s(scope, end)));
    }

    /** A 1-D int64 constant. */
    String int64s(String scope, long... values) {
        ByteBuffer b = ByteBuffer.allocate(values.length * Long.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        for (long v : values) {
            b.putLong(v);
        }
        return constant(scope, TensorProto.DataType.INT64_VALUE, new long[] {values.length}, b.array());
    }

    /** A scalar float32 constant. */
    String float32(String scope, float value) {
        ByteBuffer b = ByteBuffer.allocate(Float.BYTES).order(ByteOrder.LITTLE_ENDIAN).putFloat(value);
        return constant(scope, TensorProto.DataType.FLOAT_VALUE, new long[0], b.array());
    }

    /** A constant of element type {@code dataType} and shape {@code dims} from little-endian element bytes. */
    String constant(String scope, int dataType, long[] dims, byte[] littleEndian) {
        TensorProto.Builder t = TensorProto.newBuilder().setDataType(dataType).setRawData(ByteString.copyFrom(littleEndian));
        for (long d : dims) {
            t.addDims(d);
        }
        return op(scope, "Constant", List.of(), AttributeProto.newBuilder().setName("value")
                .setType(AttributeProto.AttributeType.TENSOR).setT(t).build());
    }

    static AttributeProto intAttribute(String name, long value) {
        return AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INT).setI(value).build();
    }

    static AttributeProto intsAttribute(String name, long... values) {
        AttributeProto.Builder a = AttributeProto.newBuilder().setName(name).setType(AttributeProto.AttributeType.INTS);
        for (long v : values) {
            a.addInts(v);
        }
        return a.build();
    }
}
