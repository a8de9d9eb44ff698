package dev.kvq.tensor;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;

/** {@link KvView#firstNonFinite()} finds the first NaN or infinity in logical order, and nothing else. */
class KvViewFiniteTest {
    private static final int HEADS = 3;
    private static final int TOKENS = 50;
    private static final int DIM = 64; // 3,200 floats a head: more than one chunk

    @Test
    void finiteExtremesAreFinite() {
        float[] data = new float[HEADS * TOKENS * DIM];
        float[] extremes = {Float.MAX_VALUE, -Float.MAX_VALUE, Float.MIN_VALUE, -0f, Float.MIN_NORMAL, 65504f};
        for (int i = 0; i < data.length; i++) {
            data[i] = extremes[i % extremes.length];
        }
        assertEquals(-1, KvView.of(data, HEADS, TOKENS, DIM).firstNonFinite());
    }

    @Test
    void eachKindOfNonFiniteIsFoundAtItsLogicalIndex() {
        float[] bad = {Float.NaN, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, Float.intBitsToFloat(0xFFC00001)};
        int[] positions = {0, 1023, 1024, TOKENS * DIM - 1, TOKENS * DIM + 5, HEADS * TOKENS * DIM - 1};
        for (float value : bad) {
            for (int position : positions) {
                float[] data = new float[HEADS * TOKENS * DIM];
                data[position] = value;
                if (position + 7 < data.length) {
                    data[position + 7] = Float.NaN; // a later one does not hide the first
                }
                assertEquals(position, KvView.of(data, HEADS, TOKENS, DIM).firstNonFinite(), value + " at " + position);
            }
        }
    }

    @Test
    void stridedViewsSkipWhatLiesBetweenTheirHeads() {
        // [2 heads, 40 tokens] of a buffer with room for 60 tokens a head, filled with NaN beyond the view
        try (Arena arena = Arena.ofConfined()) {
            int room = 60;
            MemorySegment segment = arena.allocate(2L * room * DIM * Float.BYTES);
            for (long i = 0; i < 2L * room * DIM; i++) {
                segment.setAtIndex(ValueLayout.JAVA_FLOAT, i, Float.NaN);
            }
            KvView view = new KvView(segment, 0, 2, 40, DIM, (long) room * DIM);
            for (int h = 0; h < 2; h++) {
                for (int t = 0; t < 40; t++) {
                    for (int d = 0; d < DIM; d++) {
                        view.set(h, t, d, h + t + d);
                    }
                }
            }
            assertEquals(-1, view.firstNonFinite());
            view.set(1, 39, 10, Float.POSITIVE_INFINITY);
            assertEquals(40L * DIM + 39 * DIM + 10, view.firstNonFinite());
            assertEquals(-1, view.tokens(0, 39).firstNonFinite());
        }
    }
}
