package dev.kvq.backend.quanto;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.spi.PackedBlock;
import dev.kvq.spi.QuantSpec;
import dev.kvq.tensor.KvView;
import java.lang.foreign.Arena;
import java.util.Arrays;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class QuantoBehaviourTest {
    @Test
    void axisOneIsRejectedPointingToMinusOne() {
        KvqException e = assertThrows(KvqException.class,
                () -> new QuantoProvider().validate(new QuantSpec(4, 1, 32, true, Map.of()), "keys of layer 0"));
        assertEquals(ErrorCode.UNSUPPORTED, e.code());
        assertTrue(e.getMessage().contains("per-channel axis is -1"), e.getMessage());
        e = assertThrows(KvqException.class,
                () -> new QuantoProvider().validate(new QuantSpec(3, 0, 32, true, Map.of()), "values of layer 1"));
        assertTrue(e.getMessage().contains("supports 2, 4, 8 bits"), e.getMessage());
    }

    @Test
    void zeroRangeDecodesToMinExactly() {
        float[] x = new float[2 * 8 * 64];
        Arrays.fill(x, -1.25f);
        try (Arena arena = Arena.ofConfined()) {
            PackedBlock b = new QuantoProvider().create(new QuantSpec(2, -1, 16, true, Map.of()))
                    .quantize(KvView.of(x, 2, 8, 64), arena);
            float[] back = new float[x.length];
            b.dequantize(KvView.of(back, 2, 8, 64));
            assertArrayEquals(x, back);
        }
    }

    @Test
    void axisMinusOneNeedsWholeGroupsOfRows() {
        try (Arena arena = Arena.ofConfined()) {
            KvqException e = assertThrows(KvqException.class, () -> new QuantoProvider()
                    .create(new QuantSpec(4, -1, 32, true, Map.of())).quantize(KvView.of(new float[2 * 37 * 64], 2, 37, 64),
                            arena));
            assertTrue(e.getMessage().contains("heads x tokens = 74 rows"), e.getMessage());
        }
    }

    @ParameterizedTest
    @CsvSource({"2,0", "2,-1", "4,0", "4,-1"})
    void convertsToAndFromQuantosLayout(int bits, int axis) {
        Random rnd = new Random(bits * 3L + axis);
        float[] x = new float[2 * 48 * 64];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        try (Arena arena = Arena.ofConfined()) {
            PackedBlock ours = new QuantoProvider().create(new QuantSpec(bits, axis, 32, true, Map.of()))
                    .quantize(KvView.of(x, 2, 48, 64), arena);
            QuantoPacking.Packed p = QuantoPacking.toQuanto(ours);
            float[] scale = new float[(int) ours.groups()];
            float[] shift = new float[scale.length];
            for (int g = 0; g < scale.length; g++) {
                scale[g] = ours.scale(g);
                shift[g] = -ours.zero(g);
            }
            PackedBlock back = QuantoPacking.fromQuanto(p, scale, shift, axis, 32, 2, 48, 64, arena);
            float[] a = new float[x.length];
            float[] b = new float[x.length];
            ours.dequantize(KvView.of(a, 2, 48, 64));
            back.dequantize(KvView.of(b, 2, 48, 64));
            assertArrayEquals(a, b);
        }
    }

    @Test
    void firstChunkGoesToTheLeastSignificantBitsAndAShortLastChunkStaysZero() {
        // 5 rows of 4-bit codes: P = 3 packed rows; rows 0..2 low nibbles, rows 3..4 high nibbles, packed row 2 high = 0.
        QuantoPacking.Packed p = new QuantoPacking.Packed(4, 5, 1, new byte[] {(byte) 0x41, (byte) 0x52, (byte) 0x03});
        assertArrayEquals(new int[] {1, 2, 3, 4, 5}, QuantoPacking.unpack(p));
    }
}
