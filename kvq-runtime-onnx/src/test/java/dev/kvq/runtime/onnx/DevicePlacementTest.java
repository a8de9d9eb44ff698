package dev.kvq.runtime.onnx;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.CachePolicy;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.Placement;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.Generator;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.StoredLayer;
import dev.kvq.generate.spi.StoredRun;
import dev.kvq.testkit.Numeric;
import dev.kvq.testkit.Repo;
import dev.kvq.testkit.Shared;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Placement device through ONNX Runtime on the CPU, end to end: the model is rewritten to read the quantized cache
 * from memory the runtime owns, and steps move only new tokens.
 * <ul>
 *   <li>Optimum-style exports (the tiny fixtures: plain, no {@code position_ids}, merged with {@code use_cache_branch},
 *       float16 K/V) and kvq's own exports (the demo model, the shared shakespeare model) load under placement device
 *       and generate, for a left-padded batch of two prompts, the greedy tokens placement host generates (float32
 *       K/V); the float16-K/V export gives logits within float16 rounding of the host's.</li>
 *   <li>The bytes a decode step moves between host memory and the runtime do not depend on the context under
 *       placement device (equal at 256 and 1,024 tokens) and grow with it under placement host.</li>
 *   <li>What the device cannot hold is refused before any work, with {@link KvqException}'s code and a message that
 *       names the fix: policy kvtuner (configuration), 3-bit codes, 4-bit codes on a head_dim of 16. (hqq's strided
 *       axis 0 is refused too: {@code kvq-tests}' DevicePlacementParityTest, which has the hqq backend.)</li>
 * </ul>
 * Both placements hold float16 scales and zeros ({@code scale_dtype: float16}), so they quantize to the same codes.
 */
class DevicePlacementTest {
    private static final List<String> TINY_PROMPTS = List.of("ROMEO: But soft, what light through yonder", "JULIET:");
    private static final List<String> CHAR_PROMPTS = List.of("ROMEO:\nBut soft, what light through yonder window "
            + "breaks?\n", "KING:\n");

    static Path fixture(String name) {
        return OptimumVariantsTest.fixture(name);
    }

    /** The host configuration with float16 parameters, and the same on the device. */
    private static CacheFactory[] placements(KvQuantConfig.Builder config, ModelDir dir) {
        KvQuantConfig host = config.placement(Placement.HOST).scaleDtype("float16").build();
        KvQuantConfig device = host.toBuilder().placement(Placement.DEVICE).scaleDtype("float16").build();
        return new CacheFactory[] {CacheFactory.quantized(KvCaches.spec(host, dir.config().shape())),
                CacheFactory.quantized(KvCaches.spec(device, dir.config().shape()))};
    }

    /** head_dim 16 holds 8-bit rows only: per-token KV8, and KIVI KV8 with per-channel key groups of 16 tokens. */
    static Stream<Arguments> tinyConfigurations() {
        return Stream.of("base", "no-position-ids", "merged").flatMap(variant -> Stream.of(
                Arguments.of(variant, "per-token KV8", KvQuantConfig.perToken(8, 8)),
                Arguments.of(variant, "KIVI KV8", KvQuantConfig.kivi(8, 8).groupSize(16))));
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("tinyConfigurations")
    void optimumExportsGenerateOnTheDeviceWhatTheyGenerateOnTheHost(String variant, String name,
                                                                    KvQuantConfig.Builder config) {
        ModelDir dir = ModelDir.open(fixture(variant));
        try (Decoder decoder = new OnnxRuntimeProvider().open(dir, "cpu"); Tokenizer tok = Tokenizers.load(dir)) {
            CacheFactory[] caches = placements(config, dir);
            assertSameGeneration(decoder, tok, caches[0], caches[1], TINY_PROMPTS, 48, variant + " " + name,
                    config != null);
        }
    }

    /** float16 K/V: the device decodes in float16 where the host rounds float32 values once, so logits stay close. */
    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"per-token KV8", "KIVI KV8"})
    void aFloat16KvExportRunsOnTheDeviceWithinFloat16Rounding(String name) {
        ModelDir dir = ModelDir.open(fixture("fp16-kv"));
        KvQuantConfig.Builder config = name.startsWith("KIVI") ? KvQuantConfig.kivi(8, 8).groupSize(16)
                : KvQuantConfig.perToken(8, 8);
        try (Decoder decoder = new OnnxRuntimeProvider().open(dir, "cpu"); Tokenizer tok = Tokenizers.load(dir)) {
            assertTrue(decoder.halfKv(), "the fixture's K/V are float16");
            CacheFactory[] caches = placements(config, dir);
            int[][] prompts = TINY_PROMPTS.stream().map(tok::encode).toArray(int[][]::new);
            float[][][] host = logits(decoder, caches[0], prompts, 40, null);
            float[][][] device = logits(decoder, caches[1], prompts, 40, null);
            double worst = 0;
            for (int step = 0; step < host.length; step++) {
                for (int b = 0; b < host[step].length; b++) {
                    worst = Math.max(worst, Numeric.maxRelativeDiff(host[step][b], device[step][b]));
                }
            }
            double w = worst;
            System.out.printf("fp16-kv %s: device vs host logits, max difference relative to the largest |logit| %.1e%n",
                    name, worst);
            assertTrue(worst <= 1e-2, () -> name + ": logits differ by " + w + " of the largest logit");
        }
    }

    static Stream<Arguments> charConfigurations() {
        return Stream.of(Arguments.of("full precision", null), Arguments.of("per-token KV4", KvQuantConfig.perToken(4, 4)),
                Arguments.of("KIVI K4V2", KvQuantConfig.kivi(4, 2)));
    }

    @ParameterizedTest(name = "demo model, {0}")
    @MethodSource("charConfigurations")
    void theDemoModelGeneratesOnTheDeviceWhatItGeneratesOnTheHost(String name, KvQuantConfig.Builder config) {
        kvqExport(ModelDir.open(Repo.demoModel()), name, config);
    }

    @ParameterizedTest(name = "shakespeare, {0}")
    @MethodSource("charConfigurations")
    void theSharedModelGeneratesOnTheDeviceWhatItGeneratesOnTheHost(String name, KvQuantConfig.Builder config) {
        kvqExport(ModelDir.open(requireShared("models/shakespeare-char-llama")), name, config);
    }

    /**
     * The same through kvq's attention operator on the CPU (what CUDA runs by default): greedy text equal, logits
     * within 1e-3 for quantized caches (see {@link #assertSameGeneration}).
     */
    @ParameterizedTest(name = "demo model through kvq's attention operator, {0}")
    @MethodSource("charConfigurations")
    void theDemoModelGeneratesTheSameThroughKvqsAttentionOperator(String name, KvQuantConfig.Builder config) {
        String before = System.getProperty(OnnxQuantizedDecoder.FUSED_ATTENTION);
        System.setProperty(OnnxQuantizedDecoder.FUSED_ATTENTION, "true");
        try {
            kvqExport(ModelDir.open(Repo.demoModel()), name + ", kvq's attention", config);
        } finally {
            if (before == null) {
                System.clearProperty(OnnxQuantizedDecoder.FUSED_ATTENTION);
            } else {
                System.setProperty(OnnxQuantizedDecoder.FUSED_ATTENTION, before);
            }
        }
    }

    /**
     * Attending through kvq's operator, the decoder reads the history in token blocks of 32 (the CUDA kernel's warp of
     * tokens) and asks for the same layout again without being made anew; dequantizing, one token per row.
     */
    @ParameterizedTest(name = "kvq.onnx.fusedAttention={0}")
    @ValueSource(strings = {"true", "false"})
    void theDecoderReadsTokenBlocksWhereItAttendsOverTheCodes(String fused) {
        String before = System.getProperty(OnnxQuantizedDecoder.FUSED_ATTENTION);
        System.setProperty(OnnxQuantizedDecoder.FUSED_ATTENTION, fused);
        ModelDir dir = ModelDir.open(Repo.demoModel());
        var config = dir.config();
        try (Decoder decoder = new OnnxRuntimeProvider().open(dir, "cpu")) {
            StoredRun raw = StoredRun.raw(config.kvHeads(), decoder.halfKv(), config.headDim());
            QuantizedPastLayout layout = new QuantizedPastLayout(config.kvHeads(), config.headDim(),
                    Collections.nCopies(config.layers(), new StoredLayer(List.of(raw), List.of(raw), 0)));
            var quantized = decoder.quantized(layout);
            assertEquals(fused.equals("true") ? 32 : 1, quantized.layout().tokenBlock());
            assertEquals(layout, quantized.layout().withTokenBlock(1), "the same layout otherwise");
            assertTrue(quantized == decoder.quantized(layout), "made once for the layout asked for");
        } finally {
            if (before == null) {
                System.clearProperty(OnnxQuantizedDecoder.FUSED_ATTENTION);
            } else {
                System.setProperty(OnnxQuantizedDecoder.FUSED_ATTENTION, before);
            }
        }
    }

    /** kvq's own exports: greedy text equal on both placements; full precision is held raw (float32) on the device. */
    private static void kvqExport(ModelDir dir, String name, KvQuantConfig.Builder config) {
        CacheFactory[] caches = config == null
                ? new CacheFactory[] {CacheFactory.fullPrecision(dir.config().shape()),
                        CacheFactory.fullPrecision(dir.config().shape(), Placement.DEVICE)}
                : placements(config, dir);
        try (Decoder decoder = new OnnxRuntimeProvider().open(dir, "cpu"); Tokenizer tok = Tokenizers.load(dir)) {
            assertSameGeneration(decoder, tok, caches[0], caches[1], CHAR_PROMPTS, 40, dir.name() + " " + name,
                    config != null);
        }
    }

    /**
     * Greedy generation of {@code prompts} as one batch under both placements gives the same tokens; the device run
     * holds its cache in the runtime's memory. Then the same steps once more through sessions, comparing logits: equal
     * to float rounding (the host materializes float32, the device decodes in the graph).
     */
    private static void assertSameGeneration(Decoder decoder, Tokenizer tok, CacheFactory host, CacheFactory device,
                                             List<String> prompts, int tokens, String what, boolean quantized) {
        assertEquals(Placement.DEVICE, device.placement(), what);
        var onHost = new Generator(decoder, tok, host).generate(prompts, Generator.Options.greedy(tokens), null);
        var onDevice = new Generator(decoder, tok, device).generate(prompts, Generator.Options.greedy(tokens), null);
        for (int b = 0; b < prompts.size(); b++) {
            var h = onHost.results().get(b);
            var d = onDevice.results().get(b);
            int sequence = b;
            assertArrayEquals(h.tokens(), d.tokens(), () -> what + ", prompt " + sequence + ": host " + h.text().strip()
                    + " | device " + d.text().strip());
            assertEquals(h.stopReason(), d.stopReason(), what);
        }
        assertTrue(onHost.results().getFirst().tokens().length > 8, what + ": generates before any stop");
        assertEquals(onHost.stats().kvBytes(), onDevice.stats().kvBytes(), what + ": the caches hold the same bytes");
        int[][] prompt = prompts.stream().map(tok::encode).toArray(int[][]::new);
        long[] deviceBytes = new long[1];
        float[][][] hostLogits = logits(decoder, host, prompt, 12, null);
        float[][][] deviceLogits = logits(decoder, device, prompt, 12, deviceBytes);
        assertTrue(deviceBytes[0] > 0, what + ": the device session holds its cache in the runtime's memory");
        // the device attends in kvq's operator, summing in another order than ONNX Runtime's MatMul on the host's
        // float32 past; a new token's 4- or 2-bit code can then land one step apart, which later logits carry
        // (FusedAttentionTest compares both on one fixed history, within 1e-5)
        double tolerance = quantized && OnnxQuantizedDecoder.fusedAttention(false) ? 1e-3 : 1e-4;
        for (int step = 0; step < hostLogits.length; step++) {
            for (int b = 0; b < prompt.length; b++) {
                double diff = Numeric.maxRelativeDiff(hostLogits[step][b], deviceLogits[step][b]);
                int s = step;
                assertTrue(diff <= tolerance, () -> what + ", step " + s + ": logits differ by " + diff);
            }
        }
    }

    /**
     * The last position's logits of a prefill of {@code prompts} (left-padded batch) and of {@code steps} decode steps
     * feeding fixed tokens; {@code deviceBytes[0]} gets the session's device bytes when given.
     */
    private static float[][][] logits(Decoder decoder, CacheFactory caches, int[][] prompts, int steps,
                                      long[] deviceBytes) {
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


    /**
     * Bytes moved per decode step after a prefill of 256 and of 1,024 tokens: the same under placement device (new
     * tokens' codes, the residual, new K/V and logits; 32 steps, so KIVI's residual flushes a block once at either
     * context), growing with the history under placement host (the whole past handed over and read back every step;
     * 4 steps).
     */
    @Test
    void aDeviceStepMovesTheSameBytesAtAnyContextAndAHostStepMoreWithHistory() throws IOException {
        ModelDir dir = ModelDir.open(requireShared("models/shakespeare-char-llama"));
        String text = Files.readString(requireShared("data/tinyshakespeare/input.txt"));
        Map<String, CacheFactory[]> configs = new LinkedHashMap<>();
        configs.put("per-token KV4", placements(KvQuantConfig.perToken(4, 4), dir));
        configs.put("KIVI K4V2", placements(KvQuantConfig.kivi(4, 2), dir));
        configs.put("full precision", new CacheFactory[] {CacheFactory.fullPrecision(dir.config().shape()),
                CacheFactory.fullPrecision(dir.config().shape(), Placement.DEVICE)});
        try (Decoder decoder = new OnnxRuntimeProvider().open(dir, "cpu"); Tokenizer tok = Tokenizers.load(dir)) {
            int[] ids = tok.encode(text.substring(1003854, 1003854 + 1100));
            for (var e : configs.entrySet()) {
                double host256 = transferPerStep(decoder, e.getValue()[0], ids, 256, 4);
                double host1024 = transferPerStep(decoder, e.getValue()[0], ids, 1024, 4);
                double device256 = transferPerStep(decoder, e.getValue()[1], ids, 256, 32);
                double device1024 = transferPerStep(decoder, e.getValue()[1], ids, 1024, 32);
                System.out.printf("%s: bytes per step, host %.0f / %.0f, device %.0f / %.0f at 256 / 1024%n",
                        e.getKey(), host256, host1024, device256, device1024);
                assertEquals(device256, device1024, e.getKey() + ": a device step moves what it moves at any context");
                assertTrue(host1024 > 3 * host256, e.getKey() + ": a host step moves the history: " + host256 + " at "
                        + "256, " + host1024 + " at 1024");
                assertTrue(device1024 < host1024 / 10, e.getKey() + ": " + device1024 + " on the device, " + host1024
                        + " on the host");
            }
        }
    }

    /** Prefills {@code context} tokens of one sequence, then feeds {@code steps} more: bytes moved per decode step. */
    private static double transferPerStep(Decoder decoder, CacheFactory caches, int[] ids, int context, int steps) {
        try (DecodeSession s = caches.session(decoder, 1)) {
            s.reserve(context + steps);
            s.feed(new int[][] {Arrays.copyOf(ids, context)}, false);
            long before = s.transferBytes();
            long stepsBefore = s.steps();
            for (int i = 0; i < steps; i++) {
                s.feed(new int[][] {{ids[context + i]}}, false);
            }
            assertEquals(steps, s.steps() - stepsBefore);
            return (s.transferBytes() - before) / (double) steps;
        }
    }

    @Test
    void policyKvtunerIsRefusedOnTheDeviceByTheConfiguration() {
        KvqException e = assertThrows(KvqException.class, () -> KvQuantConfig.kivi(4, 2).policy(CachePolicy.KVTUNER)
                .placement(Placement.DEVICE).build());
        assertEquals(ErrorCode.INVALID_CONFIG, e.code(), e.getMessage());
        assertTrue(e.getMessage().contains("policy append") && e.getMessage().contains("placement host"),
                e.getMessage());
    }

    @Test
    void codesTheDeviceCannotDecodeAreRefusedBeforeAnyWork() {
        ModelDir demo = ModelDir.open(Repo.demoModel());
        try (Decoder decoder = new OnnxRuntimeProvider().open(demo, "cpu"); Tokenizer tok = Tokenizers.load(demo)) {
            CacheFactory threeBits = placements(KvQuantConfig.perToken(3, 3), demo)[1];
            KvqException e = assertThrows(KvqException.class, () -> new Generator(decoder, tok, threeBits)
                    .generate(List.of("KING:"), Generator.Options.greedy(4), null));
            assertEquals(ErrorCode.UNSUPPORTED, e.code(), e.getMessage());
            assertTrue(e.getMessage().contains("3-bit") && e.getMessage().contains("placement host"), e.getMessage());
        }
        ModelDir tiny = ModelDir.open(fixture("base"));
        try (Decoder decoder = new OnnxRuntimeProvider().open(tiny, "cpu"); Tokenizer tok = Tokenizers.load(tiny)) {
            CacheFactory fourBits = placements(KvQuantConfig.perToken(4, 4).groupSize(16), tiny)[1];
            KvqException e = assertThrows(KvqException.class, () -> new Generator(decoder, tok, fourBits)
                    .generate(List.of("KING:"), Generator.Options.greedy(4), null));
            assertEquals(ErrorCode.UNSUPPORTED, e.code(), e.getMessage());
            assertTrue(e.getMessage().contains("head_dim is 16") && e.getMessage().contains("placement host"),
                    e.getMessage());
        }
    }

    /** A file of the shared folder: the test skips with its name where it is missing, but fails on CI. */
    private static Path requireShared(String relative) {
        Path p = Shared.root().resolve(relative);
        if (!Files.exists(p) && "true".equals(System.getenv("CI"))) {
            fail(p + " is missing; CI runs with the shared folder beside the repository, so this test must run there");
        }
        return Shared.require(relative);
    }
}
