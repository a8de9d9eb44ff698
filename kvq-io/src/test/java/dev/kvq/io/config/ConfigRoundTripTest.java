package dev.kvq.io.config;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.config.CachePolicy;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.LayerBits;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** What kvq writes, kvq (and KVTuner, for the per-layer format) reads back as the same configuration. */
class ConfigRoundTripTest {
    @TempDir
    Path dir;

    private static Map<Integer, LayerBits> layers() {
        Map<Integer, LayerBits> m = new TreeMap<>();
        for (int l = 0; l < 12; l++) {
            m.put(l, new LayerBits(l % 3 == 0 ? 8 : 4, l % 2 == 0 ? 2 : 4));
        }
        return m;
    }

    private static List<KvQuantConfig> configs() {
        Map<Integer, Map<Integer, LayerBits>> heads = new LinkedHashMap<>();
        heads.put(0, Map.of(0, new LayerBits(8, 4), 1, new LayerBits(4, 2)));
        heads.put(1, Map.of(0, new LayerBits(2, 2), 1, new LayerBits(4, 4)));
        return List.of(
                KvQuantConfig.builder().build(),
                KvQuantConfig.perToken(2, 4).backend("hqq").option("optimize", "false").policy(CachePolicy.KVTUNER)
                        .forceQuant(true).device("cuda:1").build(),
                KvQuantConfig.kivi(4, 2).runtime("djl").perLayer(layers(), null).build(),
                KvQuantConfig.kivi(4, 4).backend("quanto").axes(-1, 0).perHead(heads, null).build());
    }

    @Test
    void jsonOfAConfigurationParsesBackToIt() {
        for (KvQuantConfig c : configs()) {
            assertEquals(c, ConfigFiles.parse(ConfigFiles.toJson(c)), ConfigFiles.toJson(c));
        }
    }

    @Test
    void perLayerFileIsKvtunersFormatInLayerOrderAndReadsBack() throws IOException {
        Path f = dir.resolve("sub/layers.yaml");
        ConfigFiles.writePerLayer(f, layers());
        String text = Files.readString(f);
        assertTrue(text.startsWith("0:\n  nbits_key: 8\n  nbits_value: 2\n1:\n  nbits_key: 4\n  nbits_value: 4\n"), text);
        assertTrue(text.indexOf("\n2:") < text.indexOf("\n10:"), "layers are in numeric order");
        assertEquals(layers(), ConfigFiles.loadPerLayer(f));
        assertEquals(ConfigFiles.Kind.PER_LAYER, ConfigFiles.kindOf(f));
    }

    @Test
    void configurationWithAPerLayerFileReadsBackAsTheConfigurationWithThoseBits() throws IOException {
        for (KvQuantConfig scheme : configs().subList(0, 2)) {
            Path perLayer = dir.resolve("best.yaml");
            Path config = dir.resolve("best.kvq.yaml");
            ConfigFiles.writePerLayer(perLayer, layers());
            ConfigFiles.writeWithPerLayerFile(config, scheme, "best.yaml", "the scheme with tuned bits");
            assertTrue(Files.readString(config).startsWith("# kvq configuration: the scheme with tuned bits\n"));
            KvQuantConfig back = ConfigFiles.load(config);
            // the per-layer bits replace the scheme's key and value bits (0: fall back to nbits)
            KvQuantConfig expected = scheme.toBuilder().bits(0, 0).perLayer(layers(), perLayer.toString()).build();
            assertEquals(expected.perLayerConfig(), back.perLayerConfig());
            assertEquals(ConfigFiles.toMap(expected).toString().replace(perLayer.toString(), ""),
                    ConfigFiles.toMap(back).toString().replace(String.valueOf(back.perLayerConfigPath()), ""));
            assertEquals(perLayer.toAbsolutePath().normalize(), Path.of(back.perLayerConfigPath()).toAbsolutePath()
                    .normalize(), "a relative per_layer_config_path resolves beside the configuration");
        }
    }
}
