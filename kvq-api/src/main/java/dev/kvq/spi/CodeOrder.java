package dev.kvq.spi;

/**
 * The order in which a block stores its codes. In every order each group is a run of {@code groupSize}
 * consecutive codes; the order says which logical element of {@code [heads, tokens, headDim]} the j-th
 * code belongs to. These are the groupings of KVTuner, HQQ and optimum-quanto on one sequence's KV.
 */
public enum CodeOrder {
    /** Logical order {@code [H, T, D]}: groups along head_dim (per-token quantization, axis 0). */
    TOKEN_MAJOR,
    /**
     * {@code [H, D, T]}: the last two dims swapped, groups along tokens of one channel, wrapping into the
     * next channel when tokens is not a multiple of the group size (KVTuner axis 1).
     */
    HEAD_CHANNEL_MAJOR,
    /**
     * {@code [D, H*T]}: the tensor viewed as rows of head_dim and transposed, groups of consecutive rows of one
     * channel, crossing heads (optimum-quanto axis -1).
     */
    CHANNEL_MAJOR,
    /**
     * Group {@code c} of {@code G = N / groupSize} groups holds logical elements {@code c, c+G, c+2G, ...}
     * (HQQ axis 0); codes are stored group after group.
     */
    STRIDED;

    /** Logical element index ({@code (h*T + t)*D + d}) of the code at position {@code j}. */
    public long logicalIndex(long j, int heads, int tokens, int headDim, int groupSize) {
        long n = (long) heads * tokens * headDim;
        return switch (this) {
            case TOKEN_MAJOR -> j;
            case HEAD_CHANNEL_MAJOR -> {
                long perHead = (long) headDim * tokens;
                long h = j / perHead;
                long rem = j % perHead;
                long d = rem / tokens;
                long t = rem % tokens;
                yield (h * tokens + t) * headDim + d;
            }
            case CHANNEL_MAJOR -> {
                long rows = (long) heads * tokens;
                long d = j / rows;
                long r = j % rows;
                yield r * headDim + d;
            }
            case STRIDED -> {
                long groups = n / groupSize;
                long c = j / groupSize;
                long r = j % groupSize;
                yield c + r * groups;
            }
        };
    }
}
