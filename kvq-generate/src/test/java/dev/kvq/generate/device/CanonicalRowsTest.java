package dev.kvq.generate.device;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.kvq.spi.AffineForm;
import dev.kvq.spi.BitPacking;
import dev.kvq.spi.CodeOrder;
import dev.kvq.spi.PackedBlock;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Blocks that keep a channel's tokens together are written as token rows a run of tokens at a time: every row holds
 * exactly the codes the block holds at (head, token, channel), for runs that start anywhere and cross the scratch's
 * run length. A row's parameters are its groups' own, whatever the block's group size and code order.
 */
class CanonicalRowsTest {
    @ParameterizedTest(name = "{0} {1}-bit, tokens [{2}, +{3})")
    @CsvSource({"HEAD_CHANNEL_MAJOR, 4, 5, 150", "HEAD_CHANNEL_MAJOR, 2, 0, 160", "HEAD_CHANNEL_MAJOR, 8, 64, 1",
        "CHANNEL_MAJOR, 4, 7, 130", "TOKEN_MAJOR, 4, 3, 70"})
    void rowsHoldTheBlocksCodes(CodeOrder order, int bits, int t0, int n) {
        int heads = 3;
        int tokens = 160;
        int dim = 64;
        try (Arena arena = Arena.ofConfined()) {
            PackedBlock b = PackedBlock.allocate(arena, bits, order, AffineForm.SCALE_MIN, 0, heads, tokens, dim, 32);
            SplittableRandom random = new SplittableRandom(bits * 31L + t0);
            int[] all = new int[heads * tokens * dim];
            for (int i = 0; i < all.length; i++) {
                all[i] = random.nextInt(1 << bits);
            }
            BitPacking.pack(all, 0, all.length, bits, b.codes(), 0);
            long rowBytes = (long) dim * bits / 8;
            // rows of heads apart by more than a row, and tokens further still, as a store's token blocks lay them
            long headPitch = rowBytes + 16;
            long pitch = heads * headPitch + 16;
            MemorySegment dst = arena.allocate(n * pitch);
            // scratch of 64 tokens, as the store gives it: runs of 150 tokens take three passes
            CanonicalRows.codes(b, t0, n, dst, 0, pitch, headPitch, new int[dim], new int[dim * 64]);
            int[] row = new int[dim];
            boolean[] written = new boolean[(int) (n * pitch)];
            for (int i = 0; i < n; i++) {
                for (int h = 0; h < heads; h++) {
                    long at = i * pitch + h * headPitch;
                    BitPacking.unpack(dst, at * 8 / bits, dim, bits, row, 0);
                    for (int d = 0; d < dim; d++) {
                        assertEquals(b.code(CanonicalRows.codeIndex(b, h, t0 + i, d)), row[d],
                                "token " + i + " head " + h + " channel " + d);
                    }
                    java.util.Arrays.fill(written, (int) at, (int) (at + rowBytes), true);
                }
            }
            for (int at = 0; at < written.length; at++) {
                if (!written[at]) {
                    assertEquals(0, dst.get(ValueLayout.JAVA_BYTE, at), "byte " + at + " between the rows untouched");
                }
            }
        }
    }

    @ParameterizedTest(name = "{0}, block groups of {1}, rows of groups of {2}, half {3}")
    @CsvSource({"TOKEN_MAJOR, 64, 64, true", "TOKEN_MAJOR, 32, 32, false", "TOKEN_MAJOR, 16, 32, true",
        "TOKEN_MAJOR, 128, 64, false", "HEAD_CHANNEL_MAJOR, 32, 32, true"})
    void eachRowTakesItsGroupsParameters(CodeOrder order, int blockGroup, int group, boolean half) {
        int heads = 3;
        int tokens = 40;
        int dim = 64;
        int t0 = 5;
        int n = 30;
        try (Arena arena = Arena.ofConfined()) {
            PackedBlock b = PackedBlock.allocate(arena, 4, order, AffineForm.SCALE_MIN, 0, heads, tokens, dim,
                    blockGroup);
            long groups = (long) heads * tokens * dim / blockGroup;
            for (long k = 0; k < groups; k++) {
                // exact in float16 too: small integers and quarters
                b.setGroup(k, k * 0.25f, -k);
            }
            int paramBytes = half ? 2 : 4;
            long headPitch = (long) dim / group * paramBytes + 6;
            long pitch = heads * headPitch + 10;
            for (boolean scales : new boolean[] {true, false}) {
                MemorySegment dst = arena.allocate(n * pitch);
                CanonicalRows.tokenParams(b, scales, t0, n, group, dst, 0, pitch, headPitch, half);
                for (int i = 0; i < n; i++) {
                    for (int h = 0; h < heads; h++) {
                        for (int g = 0; g < dim / group; g++) {
                            long k = CanonicalRows.codeIndex(b, h, t0 + i, g * group) / blockGroup;
                            float expected = scales ? k * 0.25f : -k;
                            long at = i * pitch + h * headPitch + (long) g * paramBytes;
                            float actual = half ? Float.float16ToFloat(dst.get(ValueLayout.JAVA_SHORT_UNALIGNED, at))
                                    : dst.get(ValueLayout.JAVA_FLOAT_UNALIGNED, at);
                            assertEquals(expected, actual, (scales ? "scale" : "zero") + " of token " + i + " head "
                                    + h + " group " + g);
                        }
                    }
                }
            }
        }
    }
}
