package dev.kvq.spi;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.kvq.tensor.KvView;
import java.lang.foreign.Arena;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** Dequantization writes every code to the logical element its order names, for every order. */
class PackedBlockTest {
    @ParameterizedTest
    @EnumSource(CodeOrder.class)
    void dequantizesEachCodeToItsLogicalPlace(CodeOrder order) {
        int heads = 2;
        int tokens = 6;
        int dim = 8;
        int gs = 4;
        Random rnd = new Random(7);
        try (Arena arena = Arena.ofConfined()) {
            PackedBlock b = PackedBlock.allocate(arena, 5, order, AffineForm.ZERO_POINT, -16, heads, tokens, dim, gs);
            int n = heads * tokens * dim;
            int[] codes = rnd.ints(n, 0, 32).toArray();
            BitPacking.pack(codes, 0, n, 5, b.codes(), 0);
            for (int g = 0; g < b.groups(); g++) {
                b.setGroup(g, 0.5f + g, g % 3 - 1f);
            }
            // Destination with strided heads (a token slice of a wider buffer), as runtimes hand them over.
            float[] wide = new float[heads * (tokens + 3) * dim];
            KvView dst = new KvView(java.lang.foreign.MemorySegment.ofArray(wide), 2L * dim, heads, tokens, dim,
                    (long) (tokens + 3) * dim);
            b.dequantize(dst);
            for (int j = 0; j < n; j++) {
                long i = order.logicalIndex(j, heads, tokens, dim, gs);
                int h = (int) (i / (tokens * dim));
                int t = (int) (i / dim % tokens);
                int d = (int) (i % dim);
                int g = j / gs;
                float expected = ((codes[j] - 16) + (g % 3 - 1f)) * (0.5f + g);
                assertEquals(expected, dst.get(h, t, d), order + " code " + j);
                assertEquals(expected, b.value(j));
            }
        }
    }

    /**
     * The SIMD decode (2, 4 and 8 bits; groups of 16 to 256 codes, so one chunk can span several groups or a group
     * several chunks; both affine forms) gives exactly the per-code reference value {@link PackedBlock#value}; a group
     * size that is not a power-of-two number of 16-code segments takes the scalar path and must agree too.
     */
    @ParameterizedTest
    @org.junit.jupiter.params.provider.CsvSource({"2, 16", "2, 32", "2, 64", "2, 128", "4, 16", "4, 32", "4, 128",
        "4, 256", "8, 16", "8, 64", "8, 128", "4, 48", "2, 96"})
    void vectorDecodeEqualsTheReferenceValueForEveryGroupLayout(int bits, int gs) {
        int heads = 3;
        int tokens = 64;
        int dim = 64;
        Random rnd = new Random(bits * 1000L + gs);
        for (AffineForm form : AffineForm.values()) {
            for (CodeOrder order : new CodeOrder[] {CodeOrder.TOKEN_MAJOR, CodeOrder.HEAD_CHANNEL_MAJOR}) {
                try (Arena arena = Arena.ofConfined()) {
                    PackedBlock b = PackedBlock.allocate(arena, bits, order, form, form == AffineForm.ZERO_POINT
                            ? -(1 << (bits - 1)) : 0, heads, tokens, dim, gs);
                    int n = heads * tokens * dim;
                    int[] codes = rnd.ints(n, 0, 1 << bits).toArray();
                    BitPacking.pack(codes, 0, n, bits, b.codes(), 0);
                    for (int g = 0; g < b.groups(); g++) {
                        b.setGroup(g, (float) rnd.nextGaussian(), (float) rnd.nextGaussian());
                    }
                    KvView dst = KvView.allocate(arena, heads, tokens, dim);
                    b.dequantize(dst);
                    for (int j = 0; j < n; j++) {
                        long i = order.logicalIndex(j, heads, tokens, dim, gs);
                        float got = dst.get((int) (i / (tokens * dim)), (int) (i / dim % tokens), (int) (i % dim));
                        assertEquals(b.value(j), got, form + " " + order + " code " + j);
                    }
                }
            }
        }
    }

    @ParameterizedTest
    @EnumSource(CodeOrder.class)
    void groupedInputIsTheInverseOfTheOrder(CodeOrder order) {
        int heads = 3;
        int tokens = 4;
        int dim = 6;
        float[] x = new float[heads * tokens * dim];
        for (int i = 0; i < x.length; i++) {
            x[i] = i;
        }
        try (GroupedInput in = GroupedInput.of(KvView.of(x, heads, tokens, dim), order, 4)) {
            for (int j = 0; j < x.length; j++) {
                assertEquals((float) order.logicalIndex(j, heads, tokens, dim, 4), in.get(j), order + " j=" + j);
            }
        }
    }

    @org.junit.jupiter.api.Test
    void roundsOneTokensParametersToHalfAndNoOther() {
        int heads = 3;
        int tokens = 5;
        int dim = 8;
        int gs = 4;
        try (Arena arena = Arena.ofConfined()) {
            PackedBlock b = PackedBlock.allocate(arena, 4, CodeOrder.TOKEN_MAJOR, AffineForm.ZERO_POINT, -8, heads,
                    tokens, dim, gs);
            for (int g = 0; g < b.groups(); g++) {
                b.setGroup(g, 0.1f + g / 3f, g / 7f - 1f); // none of these is a float16 value
            }
            b.roundTokenParamsToHalf(2);
            int perRow = dim / gs;
            for (int g = 0; g < b.groups(); g++) {
                int token = g / perRow % tokens;
                float scale = 0.1f + g / 3f;
                float zero = g / 7f - 1f;
                if (token == 2) {
                    scale = Float.float16ToFloat(Float.floatToFloat16(scale));
                    zero = Float.float16ToFloat(Float.floatToFloat16(zero));
                }
                assertEquals(scale, b.scale(g), "scale of group " + g);
                assertEquals(zero, b.zero(g), "zero of group " + g);
            }
            org.junit.jupiter.api.Assertions.assertThrows(dev.kvq.KvqException.class,
                    () -> b.roundTokenParamsToHalf(tokens));
        }
    }
}
