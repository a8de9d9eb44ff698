package dev.kvq.backend.quanto;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.spi.AffineForm;
import dev.kvq.spi.BitPacking;
import dev.kvq.spi.CodeOrder;
import dev.kvq.spi.GroupedInput;
import dev.kvq.spi.PackedBlock;
import dev.kvq.spi.QuantSpec;
import dev.kvq.spi.Quantizer;
import dev.kvq.tensor.KvView;
import java.lang.foreign.SegmentAllocator;

/**
 * One quanto quantizer on one sequence's {@code [heads, tokens, headDim]} K or V (quanto's batch dimension is 1).
 *
 * <ul>
 *   <li>int2/int4, axis 0: groups of {@code gs} contiguous elements ({@link CodeOrder#TOKEN_MAJOR}); axis -1: the
 *       tensor as {@code [H*T rows, D]}, groups of {@code gs} consecutive rows of one channel, crossing heads when
 *       {@code T} is not a multiple of {@code gs} ({@link CodeOrder#CHANNEL_MAJOR}). {@code scale = (max-min)/(2^n-1)},
 *       {@code shift = -min}, {@code q = clip(rint((x + shift)/scale), 0, 2^n-1)}, dequantized {@code scale*q - shift}.
 *       A group of zero range, where quanto divides 0 by 0, gets code 0 and decodes to min exactly.</li>
 *   <li>int8: {@code scale = max|x| / 127} per channel over all rows (axis -1), or over the whole tensor for axis 0,
 *       where quanto's axis has length 1 and it would need a scalar scale (its {@code Scale must be a scalar}
 *       failure); {@code q = clip(rint(x/scale), -128, 127)}, dequantized {@code q*scale}.</li>
 * </ul>
 */
final class QuantoQuantizer implements Quantizer {
    private final QuantSpec spec;

    QuantoQuantizer(QuantSpec spec) {
        this.spec = spec;
    }

    @Override
    public QuantSpec spec() {
        return spec;
    }

    @Override
    public PackedBlock quantize(KvView input, SegmentAllocator allocator) {
        return spec.bits() == 8 ? symmetric8(input, allocator) : affine(input, allocator);
    }

    private PackedBlock affine(KvView input, SegmentAllocator allocator) {
        int gs = spec.groupSize();
        long n = input.elements();
        long rows = (long) input.heads() * input.tokens();
        CodeOrder order;
        if (spec.axis() == 0) {
            order = CodeOrder.TOKEN_MAJOR;
            if (n % gs != 0) {
                throw new KvqException(ErrorCode.UNSUPPORTED, "quanto: " + n + " elements cannot be split into groups of "
                        + gs);
            }
        } else {
            order = CodeOrder.CHANNEL_MAJOR;
            if (rows % gs != 0 || rows < gs) {
                throw new KvqException(ErrorCode.UNSUPPORTED, "quanto axis -1 groups q_group_size (" + gs + ") consecutive "
                        + "token rows, but this block has heads x tokens = " + rows + " rows; quanto itself fails here. "
                        + "Use policy append (blocks of residual_length tokens) or axis 0");
            }
        }
        int bits = spec.bits();
        float levels = (1 << bits) - 1;
        PackedBlock block = PackedBlock.allocate(allocator, bits, order, AffineForm.SCALE_MIN, 0, input.heads(),
                input.tokens(), input.headDim(), gs);
        long groups = n / gs;
        int[] codes = new int[gs];
        try (GroupedInput in = GroupedInput.of(input, order, gs)) {
            for (long g = 0; g < groups; g++) {
                long first = g * gs;
                float mn = Float.POSITIVE_INFINITY;
                float mx = Float.NEGATIVE_INFINITY;
                for (int i = 0; i < gs; i++) {
                    float x = in.get(first + i);
                    mn = Math.min(mn, x);
                    mx = Math.max(mx, x);
                }
                if (!Float.isFinite(mn) || !Float.isFinite(mx)) {
                    throw new KvqException(ErrorCode.NON_FINITE_INPUT, "quanto: group " + g + " holds non-finite values");
                }
                float scale = (mx - mn) / levels;
                float shift = -mn;
                for (int i = 0; i < gs; i++) {
                    float q = (in.get(first + i) + shift) / scale;
                    codes[i] = scale == 0f ? 0 : (int) Math.rint(Math.min(Math.max(q, 0f), levels));
                }
                BitPacking.pack(codes, 0, gs, bits, block.codes(), first);
                block.setGroup(g, scale, -shift);
            }
        }
        return block;
    }

    private PackedBlock symmetric8(KvView input, SegmentAllocator allocator) {
        long n = input.elements();
        boolean perChannel = spec.axis() == -1;
        CodeOrder order = perChannel ? CodeOrder.CHANNEL_MAJOR : CodeOrder.TOKEN_MAJOR;
        int groupSize = Math.toIntExact(perChannel ? (long) input.heads() * input.tokens() : n);
        PackedBlock block = PackedBlock.allocate(allocator, 8, order, AffineForm.ZERO_POINT, -128, input.heads(),
                input.tokens(), input.headDim(), groupSize);
        long groups = n / groupSize;
        int[] codes = new int[groupSize];
        try (GroupedInput in = GroupedInput.of(input, order, groupSize)) {
            for (long g = 0; g < groups; g++) {
                long first = g * groupSize;
                float amax = 0f;
                for (int i = 0; i < groupSize; i++) {
                    amax = Math.max(amax, Math.abs(in.get(first + i)));
                }
                if (!Float.isFinite(amax)) {
                    throw new KvqException(ErrorCode.NON_FINITE_INPUT, "quanto: group " + g + " holds non-finite values");
                }
                float scale = amax / 127f;
                for (int i = 0; i < groupSize; i++) {
                    float q = in.get(first + i) / scale;
                    codes[i] = scale == 0f ? 128 : (int) Math.rint(Math.min(Math.max(q, -128f), 127f)) + 128;
                }
                BitPacking.pack(codes, 0, groupSize, 8, block.codes(), first);
                block.setGroup(g, scale, 0f);
            }
        }
        return block;
    }
}
