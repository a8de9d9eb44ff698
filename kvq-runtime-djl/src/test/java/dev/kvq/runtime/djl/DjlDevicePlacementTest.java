package dev.kvq.runtime.djl;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.LayerBits;
import dev.kvq.config.Placement;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.Generator;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.testkit.Numeric;
import dev.kvq.testkit.Repo;
import dev.kvq.testkit.Shared;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Placement device through DJL's PyTorch engine on the CPU, end to end: kvq adds its quantized-past entry to the
 * TorchScript program, keeps the history in PyTorch tensors and hands them to every step.
 * <ul>
 *   <li>kvq's exporter's models (the demo model) and the shared shakespeare model (a scripted program of another
 *       shape, same contract) generate under placement device, for a left-padded batch of two prompts, the greedy
 *       tokens placement host generates, and their logits agree to float rounding, for full precision (held raw),
 *       per-token KV4, KIVI K4V2 and a per-layer mix.</li>
 *   <li>The bytes a decode step moves do not depend on the context under placement device (equal at 256 and 1,024
 *       tokens) and grow with it under placement host.</li>
 * </ul>
 */
class DjlDevicePlacementTest {
    private static final List<String> PROMPTS = List.of("ROMEO:\nBut soft, what light through yonder window "
            + "breaks?\n", "KING:\n");

    static Stream<String> configurations() {
        return Stream.of("full precision", "per-token KV4", "KIVI K4V2", "per-layer mix");
    }

    /** A configuration by name for a model of {@code layers} layers (null: full precision). */
    static KvQuantConfig.Builder configuration(String name, int layers) {
        return switch (name) {
            case "full precision" -> null;
            case "per-token KV4" -> KvQuantConfig.perToken(4, 4);
            case "KIVI K4V2" -> KvQuantConfig.kivi(4, 2);
            case "per-layer mix" -> KvQuantConfig.kivi(4, 4).perLayer(mix(layers), null);
            default -> throw new IllegalArgumentException(name);
        };
    }

    /** 8-, 4- and 2-bit keys and values in turn over the layers, on KIVI's scheme. */
    static Map<Integer, LayerBits> mix(int layers) {
        List<LayerBits> cycle = List.of(LayerBits.of(8, 4), LayerBits.of(4, 2), LayerBits.of(2, 2), LayerBits.of(4, 8));
        Map<Integer, LayerBits> out = new TreeMap<>();
        for (int l = 0; l < layers; l++) {
            out.put(l, cycle.get(l % cycle.size()));
        }
        return out;
    }

    @ParameterizedTest(name = "demo model, {0}")
    @MethodSource("configurations")
    void theDemoModelGeneratesOnTheDeviceWhatItGeneratesOnTheHost(String name) {
        ModelDir dir = ModelDir.open(Repo.demoModel());
        sameOnBothPlacements(dir, name, configuration(name, dir.config().layers()));
    }

    @ParameterizedTest(name = "shakespeare, {0}")
    @MethodSource("configurations")
    void theSharedModelGeneratesOnTheDeviceWhatItGeneratesOnTheHost(String name) {
        ModelDir dir = ModelDir.open(requireShared("models/shakespeare-char-llama"));
        sameOnBothPlacements(dir, name, configuration(name, dir.config().layers()));
    }

    /** The host configuration with float16 parameters, and the same on the device. */
    static CacheFactory[] placements(KvQuantConfig.Builder config, ModelDir dir) {
        if (config == null) {
            return new CacheFactory[] {CacheFactory.fullPrecision(dir.config().shape()),
                    CacheFactory.fullPrecision(dir.config().shape(), Placement.DEVICE)};
        }
        KvQuantConfig host = config.placement(Placement.HOST).scaleDtype("float16").build();
        KvQuantConfig device = host.toBuilder().placement(Placement.DEVICE).scaleDtype("float16").build();
        return new CacheFactory[] {CacheFactory.quantized(KvCaches.spec(host, dir.config().shape())),
                CacheFactory.quantized(KvCaches.spec(device, dir.config().shape()))};
    }

    private static void sameOnBothPlacements(ModelDir dir, String name, KvQuantConfig.Builder config) {
        CacheFactory[] caches = placements(config, dir);
        String what = dir.name() + " " + name;
        try (Decoder decoder = new DjlRuntimeProvider().open(dir, "cpu"); Tokenizer tok = Tokenizers.load(dir)) {
            var onHost = new Generator(decoder, tok, caches[0]).generate(PROMPTS, Generator.Options.greedy(40), null);
            var onDevice = new Generator(decoder, tok, caches[1]).generate(PROMPTS, Generator.Options.greedy(40), null);
            for (int b = 0; b < PROMPTS.size(); b++) {
                var h = onHost.results().get(b);
                var d = onDevice.results().get(b);
                int sequence = b;
                assertArrayEquals(h.tokens(), d.tokens(), () -> what + ", prompt " + sequence + ": host "
                        + h.text().strip() + " | device " + d.text().strip());
            }
            assertTrue(onHost.results().getFirst().tokens().length > 8, what + ": generates before any stop");
            int[][] prompts = PROMPTS.stream().map(tok::encode).toArray(int[][]::new);
            long[] deviceBytes = new long[1];
            float[][][] host = logits(decoder, caches[0], prompts, 12, null);
            float[][][] device = logits(decoder, caches[1], prompts, 12, deviceBytes);
            assertTrue(deviceBytes[0] > 0, what + ": the device session holds its cache in PyTorch tensors");
            for (int step = 0; step < host.length; step++) {
                for (int b = 0; b < prompts.length; b++) {
                    double diff = Numeric.maxRelativeDiff(host[step][b], device[step][b]);
                    int s = step;
                    assertTrue(diff <= 1e-4, () -> what + ", step " + s + ": logits differ by " + diff);
                }
            }
        }
    }

    /** The last position's logits of a prefill of {@code prompts} and of {@code steps} steps feeding fixed tokens. */
    static float[][][] logits(Decoder decoder, CacheFactory caches, int[][] prompts, int steps, long[] deviceBytes) {
        float[][][] out = new float[steps + 1][prompts.length][];
        try (DecodeSession s = caches.session(decoder, prompts.length)) {
            float[][][] l = s.feed(prompts, false);
            for (int step = 0; step <= steps; step++) {
                for (int b = 0; b < prompts.length; b++) {
                    out[step][b] = l[b][0];
                }
                if (step == steps) {
                    break;
                }
                int[][] next = new int[prompts.length][];
                for (int b = 0; b < prompts.length; b++) {
                    next[b] = new int[] {1 + (step * 7 + b * 3) % (decoder.config().vocabSize() - 1)};
                }
                l = s.feed(next, false);
            }
            if (deviceBytes != null) {
                deviceBytes[0] = s.deviceBytes();
            }
        }
        return out;
    }


    /** Bytes moved per decode step after a prefill of 256 and of 1,024 tokens, under both placements. */
    @Test
    void aDeviceStepMovesTheSameBytesAtAnyContextAndAHostStepMoreWithHistory() throws IOException {
        ModelDir dir = ModelDir.open(requireShared("models/shakespeare-char-llama"));
        String text = Files.readString(requireShared("data/tinyshakespeare/input.txt"));
        Map<String, CacheFactory[]> configs = new LinkedHashMap<>();
        configs.put("per-token KV4", placements(KvQuantConfig.perToken(4, 4), dir));
        configs.put("KIVI K4V2", placements(KvQuantConfig.kivi(4, 2), dir));
        configs.put("full precision", placements(null, dir));
        try (Decoder decoder = new DjlRuntimeProvider().open(dir, "cpu"); Tokenizer tok = Tokenizers.load(dir)) {
            int[] ids = tok.encode(text.substring(1003854, 1003854 + 1100));
            for (var e : configs.entrySet()) {
                double host256 = transferPerStep(decoder, e.getValue()[0], ids, 256, 4);
                double host1024 = transferPerStep(decoder, e.getValue()[0], ids, 1024, 4);
                double device256 = transferPerStep(decoder, e.getValue()[1], ids, 256, 32);
                double device1024 = transferPerStep(decoder, e.getValue()[1], ids, 1024, 32);
                System.out.printf("djl %s: bytes per step, host %.0f / %.0f, device %.0f / %.0f at 256 / 1024%n",
                        e.getKey(), host256, host1024, device256, device1024);
                assertEquals(device256, device1024, e.getKey() + ": a device step moves what it moves at any context");
                assertTrue(host1024 > 3 * host256, e.getKey() + ": a host step moves the history: " + host256 + " at "
                        + "256, " + host1024 + " at 1024");
                assertTrue(device1024 < host1024 / 10, e.getKey() + ": " + device1024 + " on the device, " + host1024
                        + " on the host");
            }
        }
    }

    private static double transferPerStep(Decoder decoder, CacheFactory caches, int[] ids, int context, int steps) {
        try (DecodeSession s = caches.session(decoder, 1)) {
            s.reserve(context + steps);
            s.feed(new int[][] {Arrays.copyOf(ids, context)}, false);
            long before = s.transferBytes();
            for (int i = 0; i < steps; i++) {
                s.feed(new int[][] {{ids[context + i]}}, false);
            }
            return (s.transferBytes() - before) / (double) steps;
        }
    }

    /** A file of the shared folder: the test skips with its name where it is missing, but fails on CI. */
    static Path requireShared(String relative) {
        Path p = Shared.root().resolve(relative);
        if (!Files.exists(p) && "true".equals(System.getenv("CI"))) {
            fail(p + " is missing; CI runs with the shared folder beside the repository, so this test must run there");
        }
        return Shared.require(relative);
    }
}
