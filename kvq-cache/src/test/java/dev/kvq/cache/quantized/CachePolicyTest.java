package dev.kvq.cache.quantized;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.cache.KvCache;
import dev.kvq.config.CachePolicy;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.LayerBits;
import dev.kvq.config.ModelShape;
import dev.kvq.tensor.KvView;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;

class CachePolicyTest {
    private static final ModelShape SHAPE = new ModelShape(2, 2, 64);

    private static KvView random(Random rnd, int tokens) {
        float[] x = new float[SHAPE.kvHeads() * tokens * SHAPE.headDim()];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) rnd.nextGaussian() * (1 + (i % 64 == 3 ? 8 : 0));
        }
        return KvView.of(x, SHAPE.kvHeads(), tokens, SHAPE.headDim());
    }

    private static float[][] materialize(KvCache cache, int layer) {
        int n = cache.length(layer);
        float[] k = new float[SHAPE.kvHeads() * n * SHAPE.headDim()];
        float[] v = new float[k.length];
        cache.materialize(layer, KvView.of(k, SHAPE.kvHeads(), n, SHAPE.headDim()),
                KvView.of(v, SHAPE.kvHeads(), n, SHAPE.headDim()));
        return new float[][] {k, v};
    }

    /** Tokens [0, n) of a materialized [H, T, D] array, head by head. */
    private static float[] prefix(float[] all, int tokens, int n) {
        int d = SHAPE.headDim();
        float[] out = new float[SHAPE.kvHeads() * n * d];
        for (int h = 0; h < SHAPE.kvHeads(); h++) {
            System.arraycopy(all, h * tokens * d, out, h * n * d, n * d);
        }
        return out;
    }

    private static void step(KvCache cache, Random rnd, int tokens) {
        for (int l = 0; l < SHAPE.layers(); l++) {
            cache.append(l, random(rnd, tokens), random(rnd, tokens));
        }
    }

    @Test
    void appendQuantizesEachBlockOnceAndNeverTouchesItAgain() {
        KvQuantConfig c = KvQuantConfig.kivi(4, 2).policy(CachePolicy.APPEND).build();
        Random rnd = new Random(1);
        try (QuantizedKvCache cache = KvCaches.open(c, SHAPE)) {
            step(cache, rnd, 37);
            assertEquals(32, cache.quantizedTokens(0));
            assertEquals(1, cache.blockCount(0));
            float[] firstBlockKeys = prefix(materialize(cache, 0)[0], 37, 32);
            for (int s = 0; s < 100; s++) {
                step(cache, rnd, 1);
                int len = cache.length(0);
                assertEquals(len - len % 32, cache.quantizedTokens(0), "after step " + s);
                assertArrayEquals(firstBlockKeys, prefix(materialize(cache, 0)[0], len, 32), "block 0 changed at step " + s);
            }
            assertEquals(137, cache.length(1));
            assertEquals(4, cache.blockCount(0));
        }
    }

    /**
     * With residual 0 single tokens go into a tail block in place: the cache then holds a block per 32 tokens, and
     * every token still dequantizes to exactly what quantizing it alone gives (per-token groups never span tokens).
     */
    @Test
    void appendWithoutResidualFillsTailBlocksInPlaceAndEqualsTokenByTokenQuantization() {
        for (int[] kv : new int[][] {{4, 4}, {8, 2}, {3, 5}}) {
            KvQuantConfig c = KvQuantConfig.perToken(kv[0], kv[1]).policy(CachePolicy.APPEND).build();
            CacheSpec spec = KvCaches.spec(c, SHAPE);
            Random rnd = new Random(kv[0] * 10 + kv[1]);
            java.util.List<KvView[]> fed = new java.util.ArrayList<>();
            try (QuantizedKvCache cache = spec.newCache(); java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofConfined()) {
                for (int s = 0; s < 75; s++) {
                    int tokens = s == 0 ? 5 : 1;
                    KvView k = random(rnd, tokens);
                    KvView v = random(rnd, tokens);
                    fed.add(new KvView[] {k, v});
                    cache.append(0, k, v);
                }
                int n = cache.length(0);
                assertEquals(79, n);
                int tail = AppendHeadGroup.TAIL_TOKENS;
                int blocks = (n + tail - 1) / tail;
                assertEquals(blocks, cache.blockCount(0), "tail blocks of " + tail + " tokens");
                float[][] got = materialize(cache, 0);
                int t = 0;
                for (KvView[] f : fed) {
                    for (int i = 0; i < f[0].tokens(); i++, t++) {
                        for (int which = 0; which < 2; which++) {
                            dev.kvq.spi.Quantizer q = which == 0 ? spec.keyQuantizer(0, 0) : spec.valueQuantizer(0, 0);
                            float[] one = new float[SHAPE.kvHeads() * SHAPE.headDim()];
                            q.quantize(f[which].tokens(i, i + 1), arena).dequantize(KvView.of(one, SHAPE.kvHeads(), 1,
                                    SHAPE.headDim()));
                            for (int h = 0; h < SHAPE.kvHeads(); h++) {
                                for (int d = 0; d < SHAPE.headDim(); d++) {
                                    assertEquals(one[h * SHAPE.headDim() + d],
                                            got[which][(h * n + t) * SHAPE.headDim() + d],
                                            "K" + kv[0] + "V" + kv[1] + " token " + t + " head " + h + " dim " + d);
                                }
                            }
                        }
                    }
                }
                // the tail blocks (codes, one scale and zero per row), the last partly filled, plus each layer's
                // one-token residual buffers for K and V
                long perToken = 0;
                for (int bits : kv) {
                    perToken += SHAPE.kvHeads() * (dev.kvq.spi.BitPacking.packedBytes(SHAPE.headDim(), bits) + 8);
                }
                long residual = SHAPE.layers() * 2L * SHAPE.kvHeads() * SHAPE.headDim() * Float.BYTES;
                assertEquals((long) blocks * tail * perToken + residual, cache.bytesHeld(), "bytes held");
            }
        }
    }

    @Test
    void kvtunerRequantizesHistoryAtEachFlush() {
        KvQuantConfig c = KvQuantConfig.kivi(2, 2).policy(CachePolicy.KVTUNER).build();
        Random rnd = new Random(2);
        try (QuantizedKvCache cache = KvCaches.open(c, SHAPE)) {
            step(cache, rnd, 37);
            float[] before = prefix(materialize(cache, 0)[0], 37, 37);
            for (int s = 0; s < 32; s++) {
                step(cache, rnd, 1);
            }
            // The 32nd decode step flushed: the whole 69-token history was quantized again from dequantized values,
            // with per-channel groups re-formed over the longer history, so old tokens moved.
            assertEquals(69, cache.quantizedTokens(0));
            float[] after = prefix(materialize(cache, 0)[0], 69, 37);
            assertFalse(Arrays.equals(before, after), "expected drift of re-quantized history");
        }
    }

    @Test
    void forceQuantKeepsAPromptOfWholeResidualBlocksUnquantizedAsTheReferenceDoes() {
        KvQuantConfig c = KvQuantConfig.kivi(4, 4).forceQuant(true).policy(CachePolicy.KVTUNER).build();
        Random rnd = new Random(3);
        try (QuantizedKvCache cache = KvCaches.open(c, SHAPE)) {
            KvView k = random(rnd, 64);
            KvView v = random(rnd, 64);
            KvCache.KvPair out = cache.update(0, k, v);
            assertEquals(0, cache.quantizedTokens(0), "T mod R == 0: the reference's [:-0] quantizes nothing");
            assertArrayEquals(k.toArray(), out.keys().toArray());
        }
        try (QuantizedKvCache cache = KvCaches.open(c, SHAPE)) {
            KvView k = random(rnd, 70);
            KvCache.KvPair out = cache.update(0, k, random(rnd, 70));
            assertEquals(64, cache.quantizedTokens(0));
            assertFalse(Arrays.equals(k.toArray(), out.keys().toArray()), "the quantized part is returned dequantized");
        }
    }

    @Test
    void bytesHeldIsExactlyCodesParametersAndResidual() {
        KvQuantConfig c = KvQuantConfig.perToken(8, 4).policy(CachePolicy.APPEND).build();
        try (QuantizedKvCache cache = KvCaches.open(c, SHAPE)) {
            step(cache, new Random(4), 10);
            // 10 tokens go into a tail block with room for TAIL_TOKENS: its whole capacity is held
            int rows = 2 * AppendHeadGroup.TAIL_TOKENS; // heads x tokens, one group per 64-float row
            long keys = rows * 64 * 8 / 8 + rows * 8L;
            long values = rows * 64 * 4 / 8 + rows * 8L;
            long residual = 2L * (2 * 1 * 64 * 4); // one token of capacity for keys and for values
            assertEquals(SHAPE.layers() * (keys + values + residual), cache.bytesHeld());
            assertEquals(SHAPE.layers() * 10L * 2 * 2 * 64 * 2, cache.bytesFp16());
        }
    }

    @Test
    void perHeadPrecisionQuantizesEachHeadWithItsBits() {
        Map<Integer, Map<Integer, LayerBits>> heads = new LinkedHashMap<>();
        for (int l = 0; l < 2; l++) {
            Map<Integer, LayerBits> m = new LinkedHashMap<>();
            m.put(0, LayerBits.of(8, 8));
            m.put(1, LayerBits.of(2, 2));
            heads.put(l, m);
        }
        KvQuantConfig c = KvQuantConfig.perToken(4, 4).perHead(heads, null).build();
        Random rnd = new Random(5);
        KvView k = random(rnd, 16);
        KvView v = random(rnd, 16);
        try (QuantizedKvCache cache = KvCaches.open(c, SHAPE)) {
            cache.append(0, k, v);
            float[] back = materialize(cache, 0)[0];
            float[] x = k.toArray();
            int half = x.length / 2;
            assertTrue(rmse(x, back, 0, half) * 10 < rmse(x, back, half, x.length), "head 0 (8 bits) beats head 1 (2 bits)");
        }
    }

    @Test
    void errorShrinksWithBits() {
        Random rnd = new Random(6);
        KvView k = random(rnd, 64);
        double previous = Double.MAX_VALUE;
        for (int bits : new int[] {2, 3, 4, 8}) {
            try (QuantizedKvCache cache = KvCaches.open(KvQuantConfig.perToken(bits, bits).build(), SHAPE)) {
                cache.append(0, k, k);
                double e = rmse(k.toArray(), materialize(cache, 0)[0], 0, (int) k.elements());
                assertTrue(e < previous, bits + " bits: " + e + " >= " + previous);
                previous = e;
            }
        }
    }

    @Test
    void rejectsNonFiniteValuesNamingTheLayer() {
        try (QuantizedKvCache cache = KvCaches.open(KvQuantConfig.perToken(4, 4).build(), SHAPE)) {
            Random rnd = new Random(7);
            cache.append(0, random(rnd, 4), random(rnd, 4));
            KvView bad = random(rnd, 4);
            bad.set(1, 2, 5, Float.NaN);
            KvqException e = assertThrows(KvqException.class, () -> cache.append(1, random(rnd, 4), bad));
            assertEquals(ErrorCode.NON_FINITE_INPUT, e.code());
            assertTrue(e.getMessage().contains("layer 1 values") && e.getMessage().contains("head 1, new token 2, channel 5"),
                    e.getMessage());
            assertEquals(0, cache.length(1), "nothing of the rejected step is kept");
        }
    }

    @Test
    void layersFillInOrderAndClosedCachesRefuseWork() {
        QuantizedKvCache cache = KvCaches.open(KvQuantConfig.perToken(4, 4).build(), new ModelShape(3, 2, 64));
        Random rnd = new Random(8);
        KvqException order = assertThrows(KvqException.class, () -> cache.append(2, random(rnd, 1), random(rnd, 1)));
        assertTrue(order.getMessage().contains("before layer 1"), order.getMessage());
        cache.close();
        cache.close();
        assertEquals(ErrorCode.CLOSED, assertThrows(KvqException.class,
                () -> cache.append(0, random(rnd, 1), random(rnd, 1))).code());
    }

    @Test
    void appendPolicyRejectsPerChannelWithoutResidualAndForceQuant() {
        KvqException e = assertThrows(KvqException.class, () -> KvCaches.spec(
                KvQuantConfig.kivi(4, 4).residualLength(0).policy(CachePolicy.APPEND).build(), SHAPE));
        assertTrue(e.getMessage().contains("residual_length must be a positive multiple"), e.getMessage());
        e = assertThrows(KvqException.class, () -> KvCaches.spec(
                KvQuantConfig.kivi(4, 4).forceQuant(true).policy(CachePolicy.APPEND).build(), SHAPE));
        assertTrue(e.getMessage().contains("force_quant"), e.getMessage());
    }

    @Test
    void unsupportedBitsNameTheLayer() {
        Map<Integer, LayerBits> layers = Map.of(0, LayerBits.of(4, 4), 1, LayerBits.of(1, 4));
        KvqException e = assertThrows(KvqException.class, () -> KvCaches.spec(
                KvQuantConfig.builder().asym(false).perLayer(layers, null).build(), SHAPE));
        assertEquals(ErrorCode.UNSUPPORTED, e.code());
        assertTrue(e.getMessage().contains("keys of layer 1"), e.getMessage());
    }

    @Test
    void fullPrecisionCacheIsLossless() {
        Random rnd = new Random(9);
        try (KvCache cache = KvCaches.fullPrecision(SHAPE)) {
            KvView k = random(rnd, 70);
            cache.append(0, k.tokens(0, 50), k.tokens(0, 50));
            cache.append(0, k.tokens(50, 70), k.tokens(50, 70));
            assertArrayEquals(k.toArray(), materialize(cache, 0)[0]);
        }
    }

    private static double rmse(float[] a, float[] b, int from, int to) {
        double s = 0;
        for (int i = from; i < to; i++) {
            s += (a[i] - b[i]) * (double) (a[i] - b[i]);
        }
        return Math.sqrt(s / (to - from));
    }
}
