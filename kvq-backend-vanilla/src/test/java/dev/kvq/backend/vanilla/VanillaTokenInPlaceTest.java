package dev.kvq.backend.vanilla;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import dev.kvq.KvqException;
import dev.kvq.spi.AffineForm;
import dev.kvq.spi.CodeOrder;
import dev.kvq.spi.PackedBlock;
import dev.kvq.spi.QuantSpec;
import dev.kvq.spi.VectorSupport;
import dev.kvq.tensor.KvView;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * {@link VanillaQuantizer#quantizeToken}, which writes a decode step's token straight into a cache's tail block: token
 * by token, the block it fills is byte for byte the one {@code quantize} makes of all the tokens at once (groups along
 * channels never span tokens), on the vector and the scalar path.
 */
class VanillaTokenInPlaceTest {
    private static final int HEADS = 8;
    private static final int TOKENS = 16;

    @TestFactory
    Stream<DynamicTest> tokensWrittenInPlaceEqualTheWholeBlock() {
        List<DynamicTest> tests = new ArrayList<>();
        for (int bits : new int[] {2, 3, 4, 8}) {
            for (int dim : new int[] {64, 128}) {
                for (int group : new int[] {-1, 32, 16}) {
                    for (boolean asym : new boolean[] {true, false}) {
                        for (boolean vectorized : new boolean[] {true, false}) {
                            if (vectorized && !VectorSupport.enabled()) {
                                continue;
                            }
                            String name = bits + " bits, head " + dim + ", group " + group + (asym ? ", asym" : ", sym")
                                    + (vectorized ? " [vector]" : " [scalar]");
                            QuantSpec spec = QuantSpec.of(bits, 0, group, asym);
                            tests.add(DynamicTest.dynamicTest(name, () -> check(spec, dim, vectorized)));
                        }
                    }
                }
            }
        }
        return tests.stream();
    }

    private static void check(QuantSpec spec, int dim, boolean vectorized) {
        VanillaQuantizer q = new VanillaQuantizer(spec, vectorized);
        try (Arena arena = Arena.ofConfined()) {
            KvView input = random(arena, dim, 7 + dim + spec.bits());
            PackedBlock whole = q.quantize(input, arena);
            PackedBlock tail = PackedBlock.allocate(arena, whole.bits(), whole.order(), whole.form(),
                    whole.codeOffset(), HEADS, TOKENS, dim, whole.groupSize());
            // a decode step's token is a slice of every head's rows, not one contiguous run
            for (int t = 0; t < TOKENS; t++) {
                q.quantizeToken(input.tokens(t, t + 1), tail, t, arena);
            }
            assertSame(whole, tail);
        }
    }

    @Test
    void aBlockOfAnotherLayoutIsRefusedNotWrittenOver() {
        // a block of groups of 64 is not the layout of a quantizer with groups of 32: the token goes through
        // quantize-and-copy, which refuses blocks that differ, and the block keeps its zeros
        try (Arena arena = Arena.ofConfined()) {
            KvView input = random(arena, 64, 3);
            PackedBlock tail = PackedBlock.allocate(arena, 4, CodeOrder.TOKEN_MAJOR, AffineForm.ZERO_POINT, -8,
                    HEADS, TOKENS, 64, 64);
            VanillaQuantizer groupsOf32 = new VanillaQuantizer(QuantSpec.of(4, 0, 32, true), true);
            assertThrows(KvqException.class, () -> groupsOf32.quantizeToken(input.tokens(0, 1), tail, 0, arena));
            assertArrayEquals(new byte[(int) tail.codes().byteSize()], bytes(tail.codes()));
        }
    }

    private static KvView random(Arena arena, int dim, long seed) {
        KvView view = KvView.allocate(arena, HEADS, TOKENS, dim);
        SplittableRandom random = new SplittableRandom(seed);
        for (int h = 0; h < HEADS; h++) {
            for (int t = 0; t < TOKENS; t++) {
                for (int d = 0; d < dim; d++) {
                    view.set(h, t, d, (float) (random.nextGaussian() * (1 + h)));
                }
            }
        }
        return view;
    }

    private static void assertSame(PackedBlock expected, PackedBlock actual) {
        assertArrayEquals(bytes(expected.codes()), bytes(actual.codes()), "codes");
        assertEquals(expected.groups(), actual.groups());
        for (long g = 0; g < expected.groups(); g++) {
            assertEquals(expected.scale(g), actual.scale(g), "scale of group " + g);
            assertEquals(expected.zero(g), actual.zero(g), "zero of group " + g);
        }
    }

    private static byte[] bytes(MemorySegment segment) {
        return segment.toArray(ValueLayout.JAVA_BYTE);
    }
}
