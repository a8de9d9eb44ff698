package dev.kvq.tests;

import dev.kvq.io.config.ConfigFiles;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.config.CachePolicy;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.LayerBits;
import dev.kvq.config.ModelShape;
import dev.kvq.config.PrecisionPlan;
import dev.kvq.testkit.Shared;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

class ConfigFilesTest {
    private static final Pattern LAYERS = Pattern.compile("(Llama|Mistral|Qwen2\\.5-3B|Qwen2\\.5-7B)");

    @TempDir
    Path dir;

    /** Every per-layer and per-head file KVTuner publishes loads as it is and resolves for its model. */
    @TestFactory
    Stream<DynamicTest> acceptsKvtunerPublishedFiles() throws IOException {
        Path root = Shared.require("kvtuner-configs");
        List<Path> files;
        try (Stream<Path> s = Files.walk(root)) {
            files = s.filter(p -> p.toString().endsWith(".yaml")).sorted().toList();
        }
        assertTrue(files.size() >= 40, "expected KVTuner's published files, found " + files.size());
        return files.stream().map(f -> DynamicTest.dynamicTest(root.relativize(f).toString(), () -> {
            KvQuantConfig c = ConfigFiles.load(f);
            int layers = layersOf(f.getFileName().toString());
            if (c.perHeadQuant()) {
                assertEquals(ConfigFiles.Kind.PER_HEAD, ConfigFiles.kindOf(f));
                PrecisionPlan plan = PrecisionPlan.resolve(c, new ModelShape(layers, 8, 128));
                assertEquals(8.0, plan.averageKeyBits());
                assertEquals(4.0, plan.averageValueBits());
            } else {
                assertTrue(c.perLayerQuant());
                assertEquals(ConfigFiles.Kind.PER_LAYER, ConfigFiles.kindOf(f));
                PrecisionPlan plan = PrecisionPlan.resolve(c, new ModelShape(layers, 8, 128));
                assertEquals(layers, plan.layers().size());
                double avg = plan.averageBits();
                assertTrue(avg >= 2 && avg <= 8, "average " + avg);
            }
        }));
    }

    private static int layersOf(String name) {
        Matcher m = LAYERS.matcher(name);
        assertTrue(m.find(), name);
        return switch (m.group(1)) {
            case "Qwen2.5-3B" -> 36;
            case "Qwen2.5-7B" -> 28;
            default -> 32;
        };
    }

    @Test
    void bindsKvtunerFieldNamesFromYaml() throws IOException {
        Path f = write("kv.yaml", """
                nbits: 4
                nbits_key: 8
                nbits_value: 2
                axis_key: 1
                axis_value: 0
                asym: true
                q_group_size: 32
                residual_length: 64
                compute_dtype: torch.float16
                device: cuda:0
                force_quant: true
                backend: vanilla
                runtime: djl
                policy: append
                """);
        KvQuantConfig c = ConfigFiles.load(f);
        assertEquals(8, c.effectiveKeyBits());
        assertEquals(2, c.effectiveValueBits());
        assertEquals(1, c.axisKey());
        assertTrue(c.asym());
        assertEquals(32, c.groupSize());
        assertEquals(64, c.residualLength());
        assertEquals("float16", c.computeDtype());
        assertEquals("cuda:0", c.device());
        assertTrue(c.forceQuant());
        assertEquals("djl", c.runtime());
        assertEquals(CachePolicy.APPEND, c.policy());
    }

    @Test
    void bindsJsonAndInlineAndPathPrecision() throws IOException {
        write("layers.yaml", "0:\n  nbits_key: 8\n  nbits_value: 4\n1:\n  nbits_key: 2\n  nbits_value: 2\n");
        Path f = write("kv.json", """
                {"per_layer_quant": true, "per_layer_config_path": "layers.yaml", "q_group_size": 32,
                 "residual_length": 32, "backend_options": {"optimize": false}}
                """);
        KvQuantConfig c = ConfigFiles.load(f);
        assertEquals(Map.of(0, LayerBits.of(8, 4), 1, LayerBits.of(2, 2)), c.perLayerConfig());
        assertEquals("false", c.option("optimize", "true"));
        KvQuantConfig inline = ConfigFiles.parse("""
                per_head_quant: true
                per_head_config:
                  0: {0: {nbits_key: 8, nbits_value: 4}, 1: {nbits_key: 4, nbits_value: 2}}
                """);
        assertTrue(inline.perHeadQuant());
        assertEquals(LayerBits.of(4, 2), inline.perHeadConfig().get(0).get(1));
    }

    @Test
    void roundTripsThroughItsMapForm() throws IOException {
        KvQuantConfig c = KvQuantConfig.kivi(4, 2).perLayer(Map.of(0, LayerBits.of(8, 2)), null).build();
        Path f = write("rt.json", ConfigFiles.toJson(c));
        KvQuantConfig back = ConfigFiles.load(f);
        assertEquals(c.perLayerConfig(), back.perLayerConfig());
        assertEquals(c.axisKey(), back.axisKey());
        assertEquals(c.groupSize(), back.groupSize());
        Path layers = dir.resolve("out/layers.yaml");
        ConfigFiles.writePerLayer(layers, Map.of(1, LayerBits.of(4, 2), 0, LayerBits.of(8, 8)));
        assertEquals("0:\n  nbits_key: 8\n  nbits_value: 8\n1:\n  nbits_key: 4\n  nbits_value: 2\n",
                Files.readString(layers));
        assertEquals(ConfigFiles.Kind.PER_LAYER, ConfigFiles.kindOf(layers));
    }

    @Test
    void rejectsMalformedFilesWithClearMessages() throws IOException {
        assertMessage(write("a.yaml", "nbit: 4\n"), "unknown field 'nbit' (did you mean 'nbits'?)");
        assertMessage(write("b.yaml", "nbits: four\n"), "nbits must be an integer, was \"four\"");
        assertMessage(write("c.yaml", "asym: maybe\n"), "asym must be true or false");
        assertMessage(write("d.yaml", "nbits: [4\n"), "is not valid YAML");
        assertMessage(write("e.yaml", "nbits: 4\nnbits: 2\n"), "is not valid YAML");
        assertMessage(write("f.yaml", "0:\n  nbits_key: 8\n"), "layer 0 misses nbits_value");
        assertMessage(write("g.yaml", "0:\n  nbits_key: 8\n  nbits_value: 12\n"), "nbits_value must be between 1 and 8, was 12");
        assertMessage(write("h.yaml", "0: {nbits_key: 8, nbits_value: 4}\nnbits: 4\n"), "mixes layer indices");
        assertMessage(write("i.yaml", "per_layer_quant: true\nper_head_quant: true\n"), "cannot both be true");
        assertMessage(write("j.yaml", "per_layer_quant: true\nper_layer_config_path: nowhere.yaml\n"),
                "per_layer_config_path 'nowhere.yaml' not found");
        assertMessage(write("k.yaml", "q_group_size: 32\nresidual_length: 40\n"),
                "residual_length (40) must be a multiple of q_group_size (32)");
        assertMessage(write("l.yaml", "- 1\n- 2\n"), "must hold a mapping");
        assertMessage(write("m.yaml", ""), "is empty");
        assertMessage(write("n.yaml", "policy: lru\n"), "policy must be one of kvtuner, append, was 'lru'");
        KvqException missing = assertThrows(KvqException.class, () -> ConfigFiles.load(dir.resolve("absent.yaml")));
        assertEquals(ErrorCode.IO, missing.code());
        assertTrue(missing.getMessage().contains("does not exist"));
    }

    @Test
    void precisionFlagFalseKeepsUniformBits() throws IOException {
        Path f = write("off.yaml", "per_layer_quant: false\nper_layer_config:\n  0: {nbits_key: 2, nbits_value: 2}\n");
        KvQuantConfig c = ConfigFiles.load(f);
        assertFalse(c.perLayerQuant());
        assertEquals(4, c.effectiveKeyBits());
    }

    private Path write(String name, String text) throws IOException {
        return Files.writeString(dir.resolve(name), text);
    }

    private static void assertMessage(Path file, String expected) {
        KvqException e = assertThrows(KvqException.class, () -> ConfigFiles.load(file), file.toString());
        assertTrue(e.getMessage().contains(expected), () -> "message '" + e.getMessage() + "' lacks '" + expected + "'");
        assertTrue(e.getMessage().contains(file.getFileName().toString()) || e.code() != ErrorCode.INVALID_CONFIG
                || e.getMessage().startsWith("nbits") || e.getMessage().startsWith("residual")
                || e.getMessage().startsWith("policy"), e.getMessage());
    }
}
