package dev.kvq.cache.quantized;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kvq.cache.KvCache;
import dev.kvq.config.CachePolicy;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.LayerBits;
import dev.kvq.config.ModelShape;
import dev.kvq.io.safetensors.SafeTensors;
import dev.kvq.tensor.KvView;
import dev.kvq.testkit.Goldens;
import dev.kvq.testkit.Numeric;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Every recorded step of {@code cache.safetensors} (KVTuner's {@code FlexibleVanillaQuantizedCache.update} on
 * real K/V: prefill then single-token decode steps) reproduced by policy {@code kvtuner}, max abs difference
 * 1e-5.
 */
class KvtunerCacheGoldenTest {
    private static final String FILE = "cache.safetensors";

    @TestFactory
    Stream<DynamicTest> reproducesReferenceUpdates() {
        List<DynamicTest> tests = new ArrayList<>();
        for (JsonNode c : Goldens.cases(FILE)) {
            tests.add(DynamicTest.dynamicTest(c.path("name").asText(), () -> run(c)));
        }
        return tests.stream();
    }

    static KvQuantConfig config(JsonNode c) {
        JsonNode cfg = c.path("config");
        KvQuantConfig.Builder b = KvQuantConfig.builder().backend("vanilla").policy(CachePolicy.KVTUNER)
                .nbits(cfg.path("nbits").asInt(4))
                .bits(cfg.path("nbits_key").asInt(0), cfg.path("nbits_value").asInt(0))
                .axes(cfg.path("axis_key").asInt(0), cfg.path("axis_value").asInt(0))
                .asym(cfg.path("asym").asBoolean(false))
                .groupSize(cfg.path("q_group_size").asInt(64))
                .residualLength(cfg.path("residual_length").asInt(128))
                .forceQuant(cfg.path("force_quant").asBoolean(false));
        JsonNode perLayer = c.path("per_layer_config");
        if (cfg.path("per_layer_quant").asBoolean(false)) {
            Map<Integer, LayerBits> layers = new LinkedHashMap<>();
            perLayer.fields().forEachRemaining(e -> layers.put(Integer.parseInt(e.getKey()),
                    new LayerBits(e.getValue().path("nbits_key").asInt(), e.getValue().path("nbits_value").asInt())));
            b.perLayer(layers, null);
        }
        return b.build();
    }

    private static void run(JsonNode c) {
        String name = c.path("name").asText();
        List<Integer> recordedLayers = new ArrayList<>();
        c.path("recorded_layers").forEach(n -> recordedLayers.add(n.asInt()));
        List<Integer> recordedSteps = new ArrayList<>();
        c.path("recorded_steps").forEach(n -> recordedSteps.add(n.asInt()));
        try (SafeTensors st = Goldens.open(FILE)) {
            int layers = 0;
            while (st.contains("kv." + layers + ".key")) {
                layers++;
            }
            SafeTensors.Tensor k0 = st.tensor("kv.0.key");
            int heads = k0.dim(0) * k0.dim(1);
            int dim = k0.dim(3);
            KvView[] keys = new KvView[layers];
            KvView[] values = new KvView[layers];
            for (int l = 0; l < layers; l++) {
                keys[l] = KvView.of(st.tensor("kv." + l + ".key").floats(), heads, k0.dim(2), dim);
                values[l] = KvView.of(st.tensor("kv." + l + ".value").floats(), heads, k0.dim(2), dim);
            }
            ModelShape shape = new ModelShape(layers, heads, dim);
            int checked = 0;
            try (KvCache cache = KvCaches.open(config(c), shape)) {
                JsonNode steps = c.path("steps");
                for (int s = 0; s < steps.size(); s++) {
                    int from = steps.get(s).get(0).asInt();
                    int to = steps.get(s).get(1).asInt();
                    for (int l = 0; l < layers; l++) {
                        KvCache.KvPair out = cache.update(l, keys[l].tokens(from, to), values[l].tokens(from, to));
                        if (recordedSteps.contains(s) && recordedLayers.contains(l)) {
                            compare(st, name + ".step" + s + ".layer" + l + ".key", out.keys());
                            compare(st, name + ".step" + s + ".layer" + l + ".value", out.values());
                            checked++;
                        }
                    }
                }
            }
            assertTrue(checked >= recordedSteps.size() * recordedLayers.size(), name + ": compared " + checked);
        }
    }

    private static void compare(SafeTensors st, String key, KvView ours) {
        SafeTensors.Tensor ref = st.tensor(key);
        assertArrayEquals(new int[] {ref.dim(0) * ref.dim(1), ref.dim(2), ref.dim(3)},
                new int[] {ours.heads(), ours.tokens(), ours.headDim()}, key + ": shape");
        float diff = Numeric.maxAbsDiff(ref.floats(), ours.toArray());
        assertTrue(diff <= 1e-5f, () -> key + ": max abs difference " + diff);
    }
}
