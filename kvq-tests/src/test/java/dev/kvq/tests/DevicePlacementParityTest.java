package dev.kvq.tests;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.LayerBits;
import dev.kvq.config.Placement;
import dev.kvq.eval.LikelihoodEval;
import dev.kvq.eval.Passkey;
import dev.kvq.eval.Progress;
import dev.kvq.eval.TextWindows;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Generator;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.testkit.Shared;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Placement device computes what placement host computes, on the shared models on the CPU, through ONNX Runtime (the
 * device path's IoBinding and in-graph dequantization run there as on CUDA) and through DJL (kvq's TorchScript entry
 * over PyTorch tensors): the same perplexity (relative difference at most 1e-4) on the shakespeare model for
 * per-token KV8, KV4 and K4V2, KIVI K4V2, a per-layer and a per-head mix, with each of the vanilla, hqq and quanto
 * backends, in either runtime; the same perplexity through both runtimes on the device, and the same greedy text;
 * and the same passkey answers, prompt by prompt, on the passkey model. Host runs hold float16 scales and zeros as the device does ({@code scale_dtype: float16}), so
 * both quantize to the same codes and parameters. Each backend in its own spelling of the axes: per-token groups are
 * hqq's axis 1 (its axis 0 strides groups across the block and is refused on the device, tested here) and
 * per-channel keys are quanto's axis -1.
 *
 * <p>Perplexity: 2 windows of 256 characters of the held-out tail of tiny-shakespeare run as one batch, 208 prompt
 * characters each (94 scored tokens per configuration, each predicted by a decode step over 208 to 254 cached
 * tokens), so that the 18 configurations run in about a minute on 2 cores (50 s measured on the 2-core build machine
 * while other builds ran). Passkey: the first 150 prompts of {@code data/passkey/test.jsonl}, as {@code kvq eval
 * passkey} runs them (batch 16, 5 greedy characters), for per-token KV4 and KIVI K4V2 on the vanilla backend: about
 * 10 s per placement and configuration on an idle 2-core machine (40 s for the four runs; 72 s measured while other
 * builds shared the cores), so all 150 prompts are kept. Its prompts differ in length, so a batch is left-padded and
 * the device's per-sequence counts of real positions are exercised too.
 */
class DevicePlacementParityTest {
    private static final String MODEL = "models/shakespeare-char-llama";
    private static final String TEXT = "data/tinyshakespeare/input.txt";
    /** The last 10% of tiny-shakespeare, which the model did not train on. */
    private static final int HELD_OUT = 1003854;
    private static final int WINDOW = 256;
    private static final int WINDOWS = 2;
    /**
     * 208 prompt tokens and 47 decode steps per window: every scored step reads a long quantized history, KIVI's
     * residual flushes a block on the way (208 = 6.5 blocks of 32) and per-token caches fill tail blocks.
     */
    private static final LikelihoodEval.Options OPTIONS = new LikelihoodEval.Options(208, WINDOWS, false);
    private static final int PASSKEY_PROMPTS = 150;

    /** The models, opened by the first test that needs each and shared by the rest. */
    private static final Map<String, Decoder> DECODERS = new LinkedHashMap<>();
    private static final Map<String, Tokenizer> TOKENIZERS = new LinkedHashMap<>();

    /** A per-layer mix on KIVI's scheme: 8-, 4- and 2-bit keys and values over the 8 layers (3.75 bits on average). */
    private static final Map<Integer, LayerBits> PER_LAYER = new java.util.TreeMap<>(Map.of(0, LayerBits.of(8, 4),
            1, LayerBits.of(4, 2), 2, LayerBits.of(4, 4), 3, LayerBits.of(2, 2), 4, LayerBits.of(4, 2),
            5, LayerBits.of(8, 8), 6, LayerBits.of(2, 4), 7, LayerBits.of(4, 4)));

    /** A per-head mix on the per-token scheme: the two KV heads of every layer differ in key and value bits. */
    private static Map<Integer, Map<Integer, LayerBits>> perHead() {
        Map<Integer, Map<Integer, LayerBits>> heads = new LinkedHashMap<>();
        for (int l = 0; l < 8; l++) {
            // heads in file order (Map.of iterates in an order that changes from run to run)
            Map<Integer, LayerBits> layer = new LinkedHashMap<>();
            layer.put(0, l % 2 == 0 ? LayerBits.of(4, 2) : LayerBits.of(2, 4));
            layer.put(1, l % 2 == 0 ? LayerBits.of(8, 4) : LayerBits.of(4, 8));
            heads.put(l, layer);
        }
        return heads;
    }

    /** Per-token groups of a whole head_dim row in each backend's spelling (hqq and quanto take no group -1). */
    private static KvQuantConfig.Builder perToken(String backend, int keyBits, int valueBits) {
        KvQuantConfig.Builder b = KvQuantConfig.perToken(keyBits, valueBits).backend(backend);
        return switch (backend) {
            case "hqq" -> b.axes(1, 1).groupSize(64);
            case "quanto" -> b.groupSize(64);
            default -> b;
        };
    }

    /** KIVI's scheme (residual 32, groups of 32): keys per channel where the backend can (hqq: per token, axis 1). */
    private static KvQuantConfig.Builder kivi(String backend, int keyBits, int valueBits) {
        KvQuantConfig.Builder b = KvQuantConfig.kivi(keyBits, valueBits).backend(backend);
        return switch (backend) {
            case "hqq" -> b.axes(1, 1);
            case "quanto" -> b.axes(-1, 0);
            default -> b;
        };
    }

    static Stream<Arguments> configurations() {
        List<Arguments> out = new ArrayList<>();
        for (String runtime : List.of("onnx", "djl")) {
            for (String backend : List.of("vanilla", "hqq", "quanto")) {
                out.add(Arguments.of(runtime, backend, "per-token KV8", perToken(backend, 8, 8)));
                out.add(Arguments.of(runtime, backend, "per-token KV4", perToken(backend, 4, 4)));
                out.add(Arguments.of(runtime, backend, "per-token K4V2", perToken(backend, 4, 2)));
                out.add(Arguments.of(runtime, backend, "KIVI K4V2", kivi(backend, 4, 2)));
                out.add(Arguments.of(runtime, backend, "per-layer mix", kivi(backend, 4, 4).perLayer(PER_LAYER, null)));
                out.add(Arguments.of(runtime, backend, "per-head mix", perToken(backend, 4, 4).perHead(perHead(),
                        null)));
            }
        }
        return out.stream();
    }

    @ParameterizedTest(name = "{0} {1} {2}")
    @MethodSource("configurations")
    void devicePerplexityEqualsTheHosts(String runtime, String backend, String name, KvQuantConfig.Builder config)
            throws IOException {
        KvQuantConfig host = config.placement(Placement.HOST).scaleDtype("float16").build();
        KvQuantConfig device = host.toBuilder().placement(Placement.DEVICE).scaleDtype("float16").build();
        double onHost = perplexity(runtime, host);
        double onDevice = perplexity(runtime, device);
        double relative = Math.abs(onDevice - onHost) / onHost;
        System.out.printf("%s %s %s: ppl host %.6f, device %.6f, relative difference %.1e%n", runtime, backend, name,
                onHost, onDevice, relative);
        assertTrue(relative <= 1e-4, () -> runtime + " " + backend + " " + name + ": perplexity " + onDevice
                + " on the device, " + onHost + " on the host");
    }

    /** The windows' perplexity under {@code config} through {@code runtime}; both placements hold the same bytes. */
    private static double perplexity(String runtime, KvQuantConfig config) throws IOException {
        Decoder decoder = decoder(runtime, MODEL);
        String text = Files.readString(requireShared(TEXT));
        List<int[]> windows = TextWindows.of(TOKENIZERS.get(MODEL), text, HELD_OUT, WINDOW * WINDOWS, WINDOW);
        assertEquals(WINDOWS, windows.size());
        LikelihoodEval.Result r = LikelihoodEval.run(decoder, factory(config, decoder), windows, OPTIONS,
                Progress.none());
        assertEquals((WINDOW - OPTIONS.prefill() - 1) * WINDOWS, r.tokens(), "scored tokens");
        return r.ppl();
    }

    /**
     * The two runtimes read the same quantized history on the device: DJL's TorchScript entry and ONNX Runtime's
     * rewritten graph give the same perplexity (relative difference at most 1e-4).
     */
    @ParameterizedTest(name = "{1}")
    @MethodSource("crossRuntimeConfigurations")
    void djlAndOnnxGiveTheSamePerplexityOnTheDevice(String backend, String name, KvQuantConfig.Builder config)
            throws IOException {
        KvQuantConfig device = config.placement(Placement.DEVICE).scaleDtype("float16").build();
        double onnx = perplexity("onnx", device);
        double djl = perplexity("djl", device);
        double relative = Math.abs(djl - onnx) / onnx;
        System.out.printf("device %s: ppl onnx %.6f, djl %.6f, relative difference %.1e%n", name, onnx, djl, relative);
        assertTrue(relative <= 1e-4, () -> name + ": perplexity " + djl + " through DJL, " + onnx + " through ONNX");
    }

    static Stream<Arguments> crossRuntimeConfigurations() {
        return Stream.of(Arguments.of("vanilla", "per-token KV4", perToken("vanilla", 4, 4)),
                Arguments.of("vanilla", "KIVI K4V2", kivi("vanilla", 4, 2)),
                Arguments.of("vanilla", "per-layer mix", kivi("vanilla", 4, 4).perLayer(PER_LAYER, null)));
    }

    /** Greedy text under KIVI K4V2 on the device: the same characters through either runtime. */
    @Test
    void djlAndOnnxGenerateTheSameTextOnTheDevice() {
        KvQuantConfig device = kivi("vanilla", 4, 2).placement(Placement.DEVICE).build();
        List<String> prompts = List.of("ROMEO:\nBut soft, what light through yonder window breaks?\n", "KING:\n");
        List<Generator.Result> texts = new ArrayList<>();
        for (String runtime : List.of("onnx", "djl")) {
            Decoder decoder = decoder(runtime, MODEL);
            texts.addAll(new Generator(decoder, TOKENIZERS.get(MODEL), factory(device, decoder))
                    .generate(prompts, Generator.Options.greedy(60), null).results());
        }
        for (int b = 0; b < prompts.size(); b++) {
            Generator.Result onnx = texts.get(b);
            Generator.Result djl = texts.get(prompts.size() + b);
            System.out.printf("device KIVI K4V2, prompt %d: %s%n", b, onnx.text().strip().replace('\n', '|'));
            assertEquals(onnx.text(), djl.text(), "prompt " + b);
            assertTrue(onnx.tokens().length >= 40, "prompt " + b + " generates before any stop");
        }
    }

    @Test
    void hqqAxisZeroIsRefusedOnTheDeviceWithTheFix() {
        Decoder decoder = decoder("onnx", MODEL);
        KvQuantConfig strided = KvQuantConfig.kivi(4, 2).backend("hqq").axes(0, 1).placement(Placement.DEVICE).build();
        KvqException e = assertThrows(KvqException.class, () -> LikelihoodEval.run(decoder, factory(strided, decoder),
                List.of(new int[WINDOW]), OPTIONS, Progress.none()));
        assertEquals(ErrorCode.UNSUPPORTED, e.code(), e.getMessage());
        assertTrue(e.getMessage().contains("hqq axis 0") && e.getMessage().contains("axis 1")
                && e.getMessage().contains("placement host"), e.getMessage());
    }

    static Stream<Arguments> passkeyConfigurations() {
        return Stream.of(Arguments.of("per-token KV4", perToken("vanilla", 4, 4)),
                Arguments.of("KIVI K4V2", kivi("vanilla", 4, 2)));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("passkeyConfigurations")
    void devicePasskeyAnswersEqualTheHosts(String name, KvQuantConfig.Builder config) {
        String model = "models/passkey-char-llama";
        Decoder decoder = decoder("onnx", model);
        List<Passkey.Item> items = Passkey.read(requireShared("data/passkey/test.jsonl"), 0, PASSKEY_PROMPTS);
        assertEquals(PASSKEY_PROMPTS, items.size());
        KvQuantConfig host = config.placement(Placement.HOST).scaleDtype("float16").build();
        KvQuantConfig device = host.toBuilder().placement(Placement.DEVICE).build();
        Tokenizer tok = TOKENIZERS.get(model);
        Passkey.Result onHost = Passkey.run(decoder, tok, factory(host, decoder), items, 16, Progress.none());
        Passkey.Result onDevice = Passkey.run(decoder, tok, factory(device, decoder), items, 16, Progress.none());
        System.out.printf("passkey %s: accuracy host %.3f, device %.3f%n", name, onHost.accuracy(), onDevice.accuracy());
        assertEquals(onHost.accuracy(), onDevice.accuracy(), name);
        assertArrayEquals(onHost.outcomes(), onDevice.outcomes(), name + ": the same prompts answered");
        assertTrue(onHost.accuracy() > 0.5, () -> name + " answers " + onHost.accuracy() + " of the prompts: the "
                + "comparison must be over a working model");
    }

    private static CacheFactory factory(KvQuantConfig config, Decoder decoder) {
        return CacheFactory.quantized(KvCaches.spec(config, decoder.config().shape()));
    }

    /** The shared model at {@code relative} through {@code runtime} on the CPU, with its tokenizer. */
    private static synchronized Decoder decoder(String runtime, String relative) {
        Decoder d = DECODERS.get(runtime + " " + relative);
        if (d == null) {
            ModelDir dir = ModelDir.open(requireShared(relative));
            d = Runtimes.discover().get(runtime).open(dir, "cpu");
            DECODERS.put(runtime + " " + relative, d);
            if (!TOKENIZERS.containsKey(relative)) {
                TOKENIZERS.put(relative, Tokenizers.load(dir));
            }
        }
        return d;
    }

    @AfterAll
    static void close() {
        DECODERS.values().forEach(Decoder::close);
        TOKENIZERS.values().forEach(Tokenizer::close);
        DECODERS.clear();
        TOKENIZERS.clear();
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
