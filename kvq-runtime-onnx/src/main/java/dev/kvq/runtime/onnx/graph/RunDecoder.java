package dev.kvq.runtime.onnx.graph;

import dev.kvq.generate.spi.StoredRun;
import dev.kvq.runtime.onnx.graph.proto.TensorProto;
import dev.kvq.spi.AffineForm;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;

/**
 * Emits the nodes that dequantize one {@link StoredRun} to float32 {@code [T, B, heads, headDim]}, operation for
 * operation as {@link StoredRun} defines it, so the result equals kvq's own float32 decode bit for bit.
 *
 * <p>Only ops ONNX Runtime's CUDA execution provider implements for these types: planes of 4- and 2-bit codes come
 * out with integer {@code Div}, {@code Mul} and {@code Sub} (no {@code BitShift} or {@code BitwiseAnd} there), then
 * {@code Cast}, {@code Reshape}, {@code Concat}, {@code Shape}, {@code Slice}, {@code Add} and {@code Mul}. Every
 * reshape copies the dims that vary ({@code 0} in the shape) or takes a shape computed from the inputs, never
 * {@code -1}, so an empty history ({@code T = 0}) decodes to an empty tensor.
 */
final class RunDecoder {
    private final NodeEmitter emit;
    private final int headDim;
    private final int integerType;

    /**
     * @param integerType element type the planes are split in: {@code UINT8} (the codes as they are; Div, Mul and Sub
     *     take uint8 from opset 14) or {@code INT32} (for older opsets)
     */
    RunDecoder(NodeEmitter emit, int headDim, int integerType) {
        this.emit = emit;
        this.headDim = headDim;
        this.integerType = integerType;
    }

    /** The float32 {@code [T, B, heads, headDim]} values of {@code run} from its three graph inputs. */
    String decode(String scope, StoredRun run, String codes, String scales, String zeros) {
        String u = emit.cast(scope, unpack(scope, run, codes), TensorProto.DataType.FLOAT_VALUE);
        String s = toFloat(scope, run, scales);
        String z = toFloat(scope, run, zeros);
        return run.axis() == StoredRun.GroupAxis.TOKEN
                ? decodeTokenGroups(scope, run, u, s, z)
                : decodeChannelGroups(scope, run, u, s, z);
    }

    /** Unsigned codes {@code [T, B, heads, headDim]} from the packed bytes {@code [T, B, heads, rowBytes]}. */
    private String unpack(String scope, StoredRun run, String codes) {
        if (run.bits() == 8) {
            return codes;
        }
        int bits = run.bits();
        int planes = 8 / bits;
        String bytes = integerType == TensorProto.DataType.UINT8_VALUE ? codes : emit.cast(scope, codes, integerType);
        // [T, B, h, chunks, 1, 16]: byte k of a chunk holds code k + 16 p of the chunk in plane p
        String chunked = emit.reshape(scope, bytes, emit.int64s(scope, 0, 0, 0, run.rowBytes(headDim) / 16, 1, 16));
        long[] divisors = new long[planes];
        for (int p = 0; p < planes; p++) {
            divisors[p] = 1L << (p * bits);
        }
        // byte / 2^(p*bits) puts plane p in the low bits; subtracting the part at and above 2^bits leaves the code
        String shifted = emit.op(scope, "Div", List.of(chunked, integers(scope, new long[] {planes, 1}, divisors)));
        String radix = integers(scope, new long[0], 1L << bits);
        String above = emit.op(scope, "Mul", List.of(emit.op(scope, "Div", List.of(shifted, radix)), radix));
        String planar = emit.op(scope, "Sub", List.of(shifted, above));
        // [T, B, h, chunks, planes, 16] flattens to code order: chunk, then plane, then byte
        return emit.reshape(scope, planar, emit.int64s(scope, 0, 0, 0, headDim));
    }

    private String toFloat(String scope, StoredRun run, String params) {
        return run.halfParams() ? emit.cast(scope, params, TensorProto.DataType.FLOAT_VALUE) : params;
    }

    /** Per-token groups: parameters {@code [T, B, h, headDim / g]} for groups of g consecutive channels. */
    private String decodeTokenGroups(String scope, StoredRun run, String u, String s, String z) {
        int groups = run.paramsPerRow(headDim);
        if (groups == 1) {
            return affine(scope, run, u, s, z);
        }
        String grouped = emit.int64s(scope, 0, 0, 0, groups, run.groupSize());
        String perGroup = emit.int64s(scope, 0, 0, 0, groups, 1);
        String x = affine(scope, run, emit.reshape(scope, u, grouped), emit.reshape(scope, s, perGroup),
                emit.reshape(scope, z, perGroup));
        return emit.reshape(scope, x, emit.int64s(scope, 0, 0, 0, headDim));
    }

    /** Per-channel groups: parameters {@code [T / g, B, h, headDim]} for groups of g consecutive tokens. */
    private String decodeChannelGroups(String scope, StoredRun run, String u, String s, String z) {
        if (run.groupSize() == 1) {
            return affine(scope, run, u, s, z);
        }
        // [T / g, B, h, D] -> codes [T / g, g, B, h, D] against parameters [T / g, 1, B, h, D]; the shapes come from
        // the parameters' own shape, which holds T / g even when it is 0
        String paramShape = emit.shape(scope, s);
        String groups = emit.slice(scope, paramShape, 0, 1);
        String rest = emit.slice(scope, paramShape, 1, 4);
        String codeShape = emit.concat(scope, List.of(groups, emit.int64s(scope, run.groupSize()), rest), 0);
        String broadcastShape = emit.concat(scope, List.of(groups, emit.int64s(scope, 1), rest), 0);
        String x = affine(scope, run, emit.reshape(scope, u, codeShape), emit.reshape(scope, s, broadcastShape),
                emit.reshape(scope, z, broadcastShape));
        return emit.reshape(scope, x, emit.shape(scope, u));
    }

    /** {@code ((u + codeOffset) + zero) * scale} or {@code u * scale + min}, in float32 as kvq computes it. */
    private String affine(String scope, StoredRun run, String u, String scale, String zero) {
        if (run.form() == AffineForm.SCALE_MIN) {
            return emit.op(scope, "Add", List.of(emit.op(scope, "Mul", List.of(u, scale)), zero));
        }
        // u + codeOffset is an exact small integer in float32, as the Java decode's (float) (u + codeOffset)
        String offset = run.codeOffset() == 0 ? u
                : emit.op(scope, "Add", List.of(u, emit.float32(scope, run.codeOffset())));
        return emit.op(scope, "Mul", List.of(emit.op(scope, "Add", List.of(offset, zero)), scale));
    }

    /** A constant of the plane arithmetic's integer type. */
    private String integers(String scope, long[] dims, long... values) {
        boolean bytes = integerType == TensorProto.DataType.UINT8_VALUE;
        ByteBuffer b = ByteBuffer.allocate(values.length * (bytes ? 1 : Integer.BYTES)).order(ByteOrder.LITTLE_ENDIAN);
        for (long v : values) {
            if (bytes) {
                b.put((byte) v);
            } else {
                b.putInt((int) v);
            }
        }
        return emit.constant(scope, integerType, dims, b.array());
    }
}
