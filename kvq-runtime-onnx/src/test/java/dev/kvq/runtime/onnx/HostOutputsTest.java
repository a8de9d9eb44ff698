package dev.kvq.runtime.onnx;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** Chunked widening gives, element for element, what {@link Float#float16ToFloat} gives, at any offset and length. */
class HostOutputsTest {
    @Test
    void widenConvertsEveryHalfAcrossChunksAndLeavesTheRest() {
        int total = 5000;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment src = arena.allocate(total * 2L);
            SplittableRandom random = new SplittableRandom(3);
            for (int i = 0; i < total; i++) {
                src.setAtIndex(ValueLayout.JAVA_SHORT, i, (short) random.nextInt(1 << 16)); // every bit pattern, NaN too
            }
            for (int[] c : new int[][] {{0, 0, 1}, {3, 7, 2048}, {1, 0, 4097}, {17, 5, total - 17}}) {
                int from = c[0];
                int to = c[1];
                int count = c[2];
                MemorySegment dst = arena.allocate((to + count + 3) * 4L);
                dst.fill((byte) 0x55);
                HostOutputs.widen(src, from, dst, to, count);
                for (int i = 0; i < count; i++) {
                    float expected = Float.float16ToFloat(src.getAtIndex(ValueLayout.JAVA_SHORT, from + i));
                    assertEquals(Float.floatToRawIntBits(expected),
                            Float.floatToRawIntBits(dst.getAtIndex(ValueLayout.JAVA_FLOAT, to + i)), "element " + i);
                }
                for (int i : new int[] {to - 1, to + count, to + count + 2}) {
                    if (i >= 0) {
                        assertEquals(0x55555555, dst.getAtIndex(ValueLayout.JAVA_INT, i), "untouched " + i);
                    }
                }
            }
        }
    }

    @Test
    void halfLogitsAreWidenedWholeFromTheirRow() {
        int vocab = 4099;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment logits = arena.allocate(3L * vocab * 2);
            for (int i = 0; i < 3 * vocab; i++) {
                logits.setAtIndex(ValueLayout.JAVA_SHORT, i, Float.floatToFloat16(i * 0.01f - 50));
            }
            float[] out = new float[vocab];
            HostOutputs.logits(logits, vocab, vocab, true, out);
            float[] expected = new float[vocab];
            for (int v = 0; v < vocab; v++) {
                expected[v] = Float.float16ToFloat(Float.floatToFloat16((vocab + v) * 0.01f - 50));
            }
            assertArrayEquals(expected, out);
        }
    }
}
