package dev.kvq.backend.hqq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.spi.PackedBlock;
import dev.kvq.spi.QuantSpec;
import dev.kvq.spi.Quantizer;
import dev.kvq.tensor.KvView;
import java.lang.foreign.Arena;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class HqqBehaviourTest {
    private static float[] gaussian(int n, long seed) {
        Random rnd = new Random(seed);
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) rnd.nextGaussian();
        }
        return x;
    }

    private static double rmse(float[] a, float[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) {
            s += (a[i] - b[i]) * (double) (a[i] - b[i]);
        }
        return Math.sqrt(s / a.length);
    }

    /** HQQ's own dequantize fails for 3 bits with axis 1 on 3-D/4-D tensors (a wrong trim); kvq's does not. */
    @Test
    void threeBitsWithAxisOneWorks() {
        float[] x = gaussian(2 * 37 * 64, 1);
        Quantizer q = new HqqProvider().create(new QuantSpec(3, 1, 32, true, Map.of()));
        try (Arena arena = Arena.ofConfined()) {
            PackedBlock b = q.quantize(KvView.of(x, 2, 37, 64), arena);
            float[] back = new float[x.length];
            b.dequantize(KvView.of(back, 2, 37, 64));
            double e = rmse(x, back);
            assertTrue(e > 0.05 && e < 0.2, "3-bit rmse " + e);
        }
    }

    @Test
    void groupSizeMinusOneIsAConfigurationError() {
        KvqException e = assertThrows(KvqException.class,
                () -> new HqqProvider().validate(new QuantSpec(4, 1, -1, true, Map.of()), "keys of layer 0"));
        assertEquals(ErrorCode.INVALID_CONFIG, e.code());
        assertTrue(e.getMessage().contains("positive q_group_size"), e.getMessage());
        e = assertThrows(KvqException.class,
                () -> new HqqProvider().validate(new QuantSpec(5, 1, 32, true, Map.of()), "keys of layer 2"));
        assertTrue(e.getMessage().contains("cannot quantize keys of layer 2 with 5 bits; it supports 1, 2, 3, 4, 8"),
                e.getMessage());
        e = assertThrows(KvqException.class,
                () -> new HqqProvider().validate(new QuantSpec(4, 1, 32, true, Map.of("optimize", "yes")), "keys"));
        assertTrue(e.getMessage().contains("optimize must be true or false"), e.getMessage());
    }

    @Test
    void theOptimizerLowersTheError() {
        float[] x = gaussian(2 * 64 * 64, 2);
        for (int i = 0; i < x.length; i += 61) {
            x[i] *= 6; // outliers, where min-max alone wastes range
        }
        try (Arena arena = Arena.ofConfined()) {
            double[] err = new double[2];
            for (int opt = 0; opt < 2; opt++) {
                Quantizer q = new HqqProvider().create(new QuantSpec(2, 1, 64, true, Map.of("optimize",
                        String.valueOf(opt == 1))));
                float[] back = new float[x.length];
                q.quantize(KvView.of(x, 2, 64, 64), arena).dequantize(KvView.of(back, 2, 64, 64));
                double s = 0;
                for (int i = 0; i < x.length; i++) {
                    s += Math.abs(x[i] - back[i]);
                }
                err[opt] = s / x.length;
            }
            assertTrue(err[1] < err[0], "mean |error| with optimizer " + err[1] + " vs without " + err[0]);
        }
    }

    @ParameterizedTest
    @CsvSource({"1,0", "1,1", "2,0", "2,1", "3,0", "3,1", "4,0", "4,1", "8,0", "8,1"})
    void convertsToAndFromHqqsLayout(int bits, int axis) {
        float[] x = gaussian(2 * 40 * 64, bits * 10L + axis);
        Quantizer q = new HqqProvider().create(new QuantSpec(bits, axis, 32, true, Map.of("optimize", "false")));
        try (Arena arena = Arena.ofConfined()) {
            PackedBlock ours = q.quantize(KvView.of(x, 2, 40, 64), arena);
            HqqPacking.Packed hqq = HqqPacking.toHqq(ours);
            float[] scale = new float[(int) ours.groups()];
            float[] zero = new float[scale.length];
            for (int g = 0; g < scale.length; g++) {
                scale[g] = ours.scale(g);
                zero[g] = -ours.zero(g);
            }
            PackedBlock back = HqqPacking.fromHqq(hqq, scale, zero, axis, 32, 2, 40, 64, arena);
            float[] a = new float[x.length];
            float[] b = new float[x.length];
            ours.dequantize(KvView.of(a, 2, 40, 64));
            back.dequantize(KvView.of(b, 2, 40, 64));
            assertArrayEquals(a, b);
        }
    }

    @Test
    void hqqLayoutPutsTheFirstChunkInTheMostSignificantBits() {
        // 4 rows x 1 column of 4-bit codes: bytes are c0<<4|c2 and c1<<4|c3.
        HqqPacking.Packed p = new HqqPacking.Packed(4, 4, 1, new byte[] {(byte) 0x13, (byte) 0x24}, null);
        assertArrayEquals(new int[] {1, 2, 3, 4}, HqqPacking.unpack(p));
        HqqPacking.Packed three = new HqqPacking.Packed(3, 2, 1, null, new int[] {(5 << 27) | (6 << 24)});
        assertArrayEquals(new int[] {5, 6}, HqqPacking.unpack(three));
    }
}
