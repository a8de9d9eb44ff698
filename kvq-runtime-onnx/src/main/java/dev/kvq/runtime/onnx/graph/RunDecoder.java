package dev.kvq.runtime.onnx.graph;

import dev.kvq.generate.spi.StoredRun;
import dev.kvq.runtime.onnx.graph.proto.TensorProto;
import dev.kvq.spi.AffineForm;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;

/**
 * Emits the nodes that dequantize one {@link StoredRun} to {@code [B, heads, T, headDim]} in the model's K/V type,
 * operation for operation as {@link StoredRun} defines it. For a float32 model the result equals kvq's own float32
 * decode bit for bit; a float16 model decodes in float16, as it computes (half the bytes of a float32 decode, which
 * matters since the whole history is decoded every step).
 *
 * <p>The stored tensors come token-major ({@code [T, B, heads, ...]}, or in blocks of tokens: {@code [T / block, B,
 * heads, block, ...]}); they are transposed to {@code [B, heads, T, ...]} while still packed, where it is cheapest.
 * Only ops ONNX Runtime's CUDA execution provider implements for these types: planes of 4- and 2-bit codes come out
 * with integer {@code Div}, {@code Mul} and {@code Sub} (no {@code BitShift} or {@code BitwiseAnd} there), then
 * {@code Cast}, {@code Reshape}, {@code Concat}, {@code Shape}, {@code Slice}, {@code Transpose}, {@code Add} and
 * {@code Mul}. Every reshape copies the dims that vary ({@code 0} in the shape) or takes a shape computed from the
 * inputs, never {@code -1}, so an empty history ({@code T = 0}) decodes to an empty tensor.
 */
final class RunDecoder {
    private final NodeEmitter emit;
    private final int headDim;
    private final int tokenBlock;
    private final int integerType;
    private final int computeType;

    /**
     * @param integerType element type the planes are split in: {@code UINT8} (the codes as they are; Div, Mul and Sub
     *     take uint8 from opset 14) or {@code INT32} (for older opsets)
     * @param computeType the model's K/V type, {@code FLOAT} or {@code FLOAT16}, in which values are decoded
     * @param tokenBlock the layout's token block ({@link dev.kvq.generate.spi.QuantizedPastLayout#tokenBlock()})
     */
    RunDecoder(NodeEmitter emit, int headDim, int tokenBlock, int integerType, int computeType) {
        this.emit = emit;
        this.headDim = headDim;
        this.tokenBlock = tokenBlock;
        this.integerType = integerType;
        this.computeType = computeType;
    }

    /** The {@code [B, heads, T, headDim]} values of {@code run} from its graph inputs (scales and zeros unused if raw). */
    String decode(String scope, StoredRun run, String codes, String scales, String zeros) {
        String packed = headMajor(scope, codes, true);
        if (run.raw()) {
            int stored = run.bits() == 16 ? TensorProto.DataType.FLOAT16_VALUE : TensorProto.DataType.FLOAT_VALUE;
            return stored == computeType ? packed : emit.cast(scope, packed, computeType);
        }
        String u = emit.cast(scope, unpack(scope, run, packed), computeType);
        boolean blocked = run.axis() == StoredRun.GroupAxis.TOKEN;
        String s = toCompute(scope, run, headMajor(scope, scales, blocked));
        String z = toCompute(scope, run, headMajor(scope, zeros, blocked));
        return run.axis() == StoredRun.GroupAxis.TOKEN
                ? decodeTokenGroups(scope, run, u, s, z)
                : decodeChannelGroups(scope, run, u, s, z);
    }

    /**
     * {@code [B, heads, T, W]} from a stored {@code [T, B, heads, W]} tensor whose rows come in the layout's token
     * blocks ({@code blocked}; parameters grouped along tokens have one row per group and no blocks).
     */
    private String headMajor(String scope, String stored, boolean blocked) {
        if (!blocked || tokenBlock == 1) {
            return emit.transpose(scope, stored, 1, 2, 0, 3);
        }
        // [T / block, B, heads, block, W], then [B, heads, T / block, block, W]; the shapes come from the tensor's
        // own, so an empty history (T = 0) stays empty
        String shape = emit.shape(scope, stored);
        String tokens = emit.slice(scope, shape, 0, 1);
        String width = emit.slice(scope, shape, 3, 4);
        String blocks = emit.op(scope, "Div", List.of(tokens, emit.int64s(scope, tokenBlock)));
        String split = emit.reshape(scope, stored, emit.concat(scope, List.of(blocks, emit.int64s(scope, 0, 0,
                tokenBlock), width), 0));
        String moved = emit.transpose(scope, split, 1, 2, 0, 3, 4);
        return emit.reshape(scope, moved, emit.concat(scope, List.of(emit.int64s(scope, 0, 0), tokens, width), 0));
    }

    /** Unsigned codes {@code [B, heads, T, headDim]} from the packed bytes {@code [B, heads, T, rowBytes]}. */
    private String unpack(String scope, StoredRun run, String codes) {
        if (run.bits() == 8) {
            return codes;
        }
        int bits = run.bits();
        int planes = 8 / bits;
        String bytes = integerType == TensorProto.DataType.UINT8_VALUE ? codes : emit.cast(scope, codes, integerType);
        // [B, h, T, chunks, 1, 16]: byte k of a chunk holds code k + 16 p of the chunk in plane p
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
        // [B, h, T, chunks, planes, 16] flattens to code order: chunk, then plane, then byte
        return emit.reshape(scope, planar, emit.int64s(scope, 0, 0, 0, headDim));
    }

    private String toCompute(String scope, StoredRun run, String params) {
        int stored = run.halfParams() ? TensorProto.DataType.FLOAT16_VALUE : TensorProto.DataType.FLOAT_VALUE;
        return stored == computeType ? params : emit.cast(scope, params, computeType);
    }

    /** Per-token groups: parameters {@code [B, h, T, headDim / g]} for groups of g consecutive channels. */
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

    /** Per-channel groups: parameters {@code [B, h, T / g, headDim]} for groups of g consecutive tokens. */
    private String decodeChannelGroups(String scope, StoredRun run, String u, String s, String z) {
        if (run.groupSize() == 1) {
            return affine(scope, run, u, s, z);
        }
        // codes [B, h, T / g, g, D] against parameters [B, h, T / g, 1, D]; the shapes come from the parameters' own
        // shape, which holds T / g even when it is 0
        String paramShape = emit.shape(scope, s);
        String leading = emit.slice(scope, paramShape, 0, 3);
        String channels = emit.slice(scope, paramShape, 3, 4);
        String codeShape = emit.concat(scope, List.of(leading, emit.int64s(scope, run.groupSize()), channels), 0);
        String broadcastShape = emit.concat(scope, List.of(leading, emit.int64s(scope, 1), channels), 0);
        String x = affine(scope, run, emit.reshape(scope, u, codeShape), emit.reshape(scope, s, broadcastShape),
                emit.reshape(scope, z, broadcastShape));
        return emit.reshape(scope, x, emit.shape(scope, u));
    }

    /** {@code ((u + codeOffset) + zero) * scale} or {@code u * scale + min}, in the compute type. */
    private String affine(String scope, StoredRun run, String u, String scale, String zero) {
        if (run.form() == AffineForm.SCALE_MIN) {
            return emit.op(scope, "Add", List.of(emit.op(scope, "Mul", List.of(u, scale)), zero));
        }
        // u + codeOffset is an exact small integer in float32 and float16, as the Java decode's (float) (u + codeOffset)
        String offset = run.codeOffset() == 0 ? u
                : emit.op(scope, "Add", List.of(u, number(scope, run.codeOffset())));
        return emit.op(scope, "Mul", List.of(emit.op(scope, "Add", List.of(offset, zero)), scale));
    }

    private String number(String scope, float value) {
        if (computeType == TensorProto.DataType.FLOAT_VALUE) {
            return emit.float32(scope, value);
        }
        ByteBuffer b = ByteBuffer.allocate(2).order(ByteOrder.LITTLE_ENDIAN).putShort(Float.floatToFloat16(value));
        return emit.constant(scope, TensorProto.DataType.FLOAT16_VALUE, new long[0], b.array());
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
