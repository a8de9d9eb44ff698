package dev.kvq.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.util.LinkedHashMap;
import java.util.Map;
import org.junit.jupiter.api.Test;

class ConfigValidationTest {
    private static String error(Runnable r) {
        KvqException e = assertThrows(KvqException.class, r::run);
        assertEquals(ErrorCode.INVALID_CONFIG, e.code());
        return e.getMessage();
    }

    @Test
    void kvtunerDefaults() {
        KvQuantConfig c = KvQuantConfig.builder().build();
        assertEquals(4, c.effectiveKeyBits());
        assertEquals(4, c.effectiveValueBits());
        assertEquals(64, c.groupSize());
        assertEquals(128, c.residualLength());
        assertEquals(CachePolicy.APPEND, c.policy());
        assertEquals("vanilla", c.backend());
    }

    @Test
    void keyAndValueBitsFallBackToNbits() {
        KvQuantConfig c = KvQuantConfig.builder().nbits(2).bits(0, 8).build();
        assertEquals(2, c.effectiveKeyBits());
        assertEquals(8, c.effectiveValueBits());
    }

    @Test
    void messagesNameFieldValueAndAllowed() {
        assertTrue(error(() -> KvQuantConfig.builder().bits(9, 4).build()).contains("nbits_key must be between 1 and 8, was 9"));
        assertTrue(error(() -> KvQuantConfig.builder().axes(0, 2).build()).contains("axis_value"));
        assertTrue(error(() -> KvQuantConfig.builder().groupSize(0).build()).contains("q_group_size"));
        assertTrue(error(() -> KvQuantConfig.builder().groupSize(32).residualLength(48).build())
                .contains("residual_length (48) must be a multiple of q_group_size (32)"));
        assertTrue(error(() -> KvQuantConfig.builder().device("tpu").build()).contains("device"));
        assertTrue(error(() -> KvQuantConfig.builder().computeDtype("int4").build()).contains("compute_dtype"));
    }

    @Test
    void perLayerAndPerHeadTogetherIsAnError() {
        Map<Integer, LayerBits> layers = Map.of(0, LayerBits.of(8, 4));
        Map<Integer, Map<Integer, LayerBits>> heads = Map.of(0, Map.of(0, LayerBits.of(8, 4)));
        String msg = error(() -> new KvQuantConfig("vanilla", "onnx", "cpu", CachePolicy.KVTUNER, 4, 0, 0, 0, 0, false,
                64, 128, "float32", false, true, layers, null, true, heads, null, Map.of(), null, null));
        assertTrue(msg.contains("per_layer_quant and per_head_quant cannot both be true"), msg);
    }

    @Test
    void groupSizeMustDivideHeadDim() {
        KvQuantConfig c = KvQuantConfig.builder().groupSize(48).residualLength(0).build();
        assertTrue(error(() -> PrecisionPlan.resolve(c, new ModelShape(2, 2, 64)))
                .contains("q_group_size (48) must divide head_dim (64)"));
    }

    @Test
    void perLayerFileMustNameExactlyTheModelsLayers() {
        Map<Integer, LayerBits> layers = new LinkedHashMap<>();
        layers.put(0, LayerBits.of(8, 4));
        layers.put(2, LayerBits.of(4, 4));
        KvQuantConfig c = KvQuantConfig.builder().perLayer(layers, null).build();
        assertTrue(error(() -> PrecisionPlan.resolve(c, new ModelShape(3, 2, 64))).contains("misses layer 1"));
        assertTrue(error(() -> PrecisionPlan.resolve(c, new ModelShape(2, 2, 64))).contains("names layer 2"));
    }

    @Test
    void perHeadFileMustHaveTheModelsHeadsInOrder() {
        Map<Integer, LayerBits> two = new LinkedHashMap<>();
        two.put(0, LayerBits.of(8, 4));
        two.put(1, LayerBits.of(4, 2));
        Map<Integer, LayerBits> swapped = new LinkedHashMap<>();
        swapped.put(1, LayerBits.of(4, 2));
        swapped.put(0, LayerBits.of(8, 4));
        KvQuantConfig ok = KvQuantConfig.builder().perHead(Map.of(0, two), null).build();
        PrecisionPlan plan = PrecisionPlan.resolve(ok, new ModelShape(1, 2, 64));
        assertEquals(8, plan.layer(0).keyBits(0));
        assertEquals(2, plan.layer(0).valueBits(1));
        assertEquals(4.5, plan.averageBits());
        assertTrue(error(() -> PrecisionPlan.resolve(ok, new ModelShape(1, 4, 64))).contains("has 2 heads"));
        KvQuantConfig bad = KvQuantConfig.builder().perHead(Map.of(0, swapped), null).build();
        assertTrue(error(() -> PrecisionPlan.resolve(bad, new ModelShape(1, 2, 64))).contains("lists head 1 where head 0"));
    }

    @Test
    void averagesOverLayersAndHeads() {
        Map<Integer, LayerBits> layers = Map.of(0, LayerBits.of(8, 4), 1, LayerBits.of(4, 2));
        PrecisionPlan plan = PrecisionPlan.resolve(KvQuantConfig.builder().perLayer(layers, null).build(),
                new ModelShape(2, 2, 64));
        assertEquals(6.0, plan.averageKeyBits());
        assertEquals(3.0, plan.averageValueBits());
        assertEquals(4.5, plan.averageBits());
    }
}
