package dev.kvq.runtime.onnx.nativeapi;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;

/**
 * A one-input-pair ONNX model written as protobuf bytes, so tests need no model file: inputs {@code x}
 * (float[2,3]) and {@code q} (uint8[2,3]); outputs {@code y = x + float(q)}, {@code q_copy = q} and {@code q} cast
 * to float16 ({@code q_f16}), int64 ({@code q_i64}) and bool ({@code q_bool}).
 */
final class CastModel {
    static final long[] SHAPE = {2, 3};
    static final int ELEMENTS = 6;

    private CastModel() {
    }

    static byte[] bytes() {
        Proto graph = new Proto()
                .message(1, node("Cast", "to", TensorElementType.FLOAT.onnxCode(), "q", "q_float"))
                .message(1, node("Add", null, 0, "x", "q_float", "y"))
                .message(1, node("Identity", null, 0, "q", "q_copy"))
                .message(1, node("Cast", "to", TensorElementType.FLOAT16.onnxCode(), "q", "q_f16"))
                .message(1, node("Cast", "to", TensorElementType.INT64.onnxCode(), "q", "q_i64"))
                .message(1, node("Cast", "to", TensorElementType.BOOL.onnxCode(), "q", "q_bool"))
                .string(2, "cast_model")
                .message(11, valueInfo("x", TensorElementType.FLOAT))
                .message(11, valueInfo("q", TensorElementType.UINT8))
                .message(12, valueInfo("y", TensorElementType.FLOAT))
                .message(12, valueInfo("q_copy", TensorElementType.UINT8))
                .message(12, valueInfo("q_f16", TensorElementType.FLOAT16))
                .message(12, valueInfo("q_i64", TensorElementType.INT64))
                .message(12, valueInfo("q_bool", TensorElementType.BOOL));
        return new Proto()
                .varint(1, 8)                                  // ir_version
                .string(2, "kvq-test")                         // producer_name
                .message(7, graph)                             // graph
                .message(8, new Proto().string(1, "").varint(2, 17)) // opset_import: default domain, opset 17
                .toByteArray();
    }

    /** A NodeProto; the last name is its output, the others its inputs; one optional int attribute. */
    private static Proto node(String opType, String attribute, long value, String... names) {
        Proto node = new Proto();
        for (int i = 0; i < names.length - 1; i++) {
            node.string(1, names[i]);
        }
        node.string(2, names[names.length - 1]).string(3, opType + "_" + names[names.length - 1]).string(4, opType);
        if (attribute != null) {
            node.message(5, new Proto().string(1, attribute).varint(3, value).varint(20, 2)); // AttributeProto INT
        }
        return node;
    }

    /** A ValueInfoProto of a tensor of SHAPE. */
    private static Proto valueInfo(String name, TensorElementType type) {
        Proto shape = new Proto();
        for (long dim : SHAPE) {
            shape.message(1, new Proto().varint(1, dim));
        }
        Proto tensor = new Proto().varint(1, type.onnxCode()).message(2, shape);
        return new Proto().string(1, name).message(2, new Proto().message(1, tensor));
    }

    /** Just enough of protobuf's wire format: varints and length-delimited fields. */
    private static final class Proto {
        private final ByteArrayOutputStream out = new ByteArrayOutputStream();

        Proto varint(int field, long value) {
            rawVarint((long) field << 3);
            rawVarint(value);
            return this;
        }

        Proto string(int field, String value) {
            return bytes(field, value.getBytes(StandardCharsets.UTF_8));
        }

        Proto message(int field, Proto message) {
            return bytes(field, message.toByteArray());
        }

        private Proto bytes(int field, byte[] value) {
            rawVarint(((long) field << 3) | 2);
            rawVarint(value.length);
            out.writeBytes(value);
            return this;
        }

        private void rawVarint(long value) {
            while ((value & ~0x7FL) != 0) {
                out.write((int) ((value & 0x7F) | 0x80));
                value >>>= 7;
            }
            out.write((int) value);
        }

        byte[] toByteArray() {
            return out.toByteArray();
        }
    }
}
