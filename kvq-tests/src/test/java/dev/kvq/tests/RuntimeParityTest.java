package dev.kvq.tests;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.Generator;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.io.config.ConfigFiles;
import dev.kvq.testkit.Repo;
import dev.kvq.testkit.Shared;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * One generation loop, two runtimes: the same prompt and cache configuration give identical greedy tokens and logits
 * within 1e-4 through ONNX Runtime and DJL/PyTorch, and a configuration file switches between them by name.
 */
class RuntimeParityTest {
    @Test
    void sameTokensAndLogitsOnTheSharedModel() {
        parity(Shared.require("models/shakespeare-char-llama"), "ROMEO:\nWhat light is this?\n");
    }

    @Test
    void sameTokensAndLogitsOnTheDemoModel() {
        parity(Repo.demoModel(), "JULIET:\nO Romeo, Romeo!\n");
    }

    private static void parity(Path model, String prompt) {
        ModelDir dir = ModelDir.open(model);
        KvQuantConfig kivi = KvQuantConfig.kivi(4, 2).build();
        CacheFactory caches = CacheFactory.quantized(KvCaches.spec(kivi, dir.config().shape()));
        try (Decoder onnx = Runtimes.discover().get("onnx").open(dir, "cpu");
             Decoder djl = Runtimes.discover().get("djl").open(dir, "cpu");
             Tokenizer tok = Tokenizers.load(dir)) {
            var a = new Generator(onnx, tok, caches).generate(List.of(prompt), Generator.Options.greedy(120), null);
            var b = new Generator(djl, tok, caches).generate(List.of(prompt), Generator.Options.greedy(120), null);
            assertArrayEquals(a.results().getFirst().tokens(), b.results().getFirst().tokens(), "greedy tokens");
            assertEquals(a.stats().kvBytes(), b.stats().kvBytes());
            // Logits of a prefill and 40 decode steps: the runtimes compute the same function to float rounding; through
            // a quantized cache a ~1e-6 difference in a key can land on the other side of a rounding boundary and move
            // a code by a whole step, so the logit bound applies to the full-precision cache (the quantized difference
            // is printed).
            int[] ids = tok.encode(prompt + a.results().getFirst().text());
            double quantized = logitDiff(onnx, djl, caches, ids);
            double worst = logitDiff(onnx, djl, CacheFactory.fullPrecision(dir.config().shape()), ids);
            double w = worst;
            System.out.printf("%s: ONNX vs DJL max |logit diff| %.2e (fp cache), %.2e (K4V2 cache)%n", dir.name(), worst,
                    quantized);
            assertTrue(worst <= 1e-4, () -> "logits differ by " + w);
        }
    }

    private static double logitDiff(Decoder onnx, Decoder djl, CacheFactory caches, int[] ids) {
        double worst = 0;
        try (DecodeSession so = new DecodeSession(onnx, List.of(caches.newCache()));
             DecodeSession sd = new DecodeSession(djl, List.of(caches.newCache()))) {
            int[] head = Arrays.copyOf(ids, 30);
            worst = Math.max(worst, diff(so.feed(new int[][] {head}, true)[0], sd.feed(new int[][] {head}, true)[0]));
            for (int i = 30; i < 70; i++) {
                worst = Math.max(worst, diff(so.feed(new int[][] {{ids[i]}}, false)[0],
                        sd.feed(new int[][] {{ids[i]}}, false)[0]));
            }
        }
        return worst;
    }

    private static double diff(float[][] a, float[][] b) {
        double m = 0;
        for (int i = 0; i < a.length; i++) {
            for (int j = 0; j < a[i].length; j++) {
                m = Math.max(m, Math.abs(a[i][j] - b[i][j]));
            }
        }
        return m;
    }

    /** The runtime is a name in the configuration: each name opens that runtime, and both continue alike. */
    @Test
    void aConfigurationFileSwitchesTheRuntime() {
        ModelDir dir = ModelDir.open(Repo.demoModel());
        List<int[]> tokens = new java.util.ArrayList<>();
        for (String runtime : List.of("onnx", "djl")) {
            KvQuantConfig c = ConfigFiles.parse("runtime: " + runtime + "\nnbits: 4\nq_group_size: 64\nresidual_length: 0\n");
            try (Decoder d = Runtimes.discover().get(c.runtime()).open(dir, c.device()); Tokenizer tok = Tokenizers.load(dir)) {
                assertEquals("dev.kvq.runtime." + runtime, d.getClass().getPackageName(), "the decoder of " + runtime);
                var out = new Generator(d, tok, CacheFactory.quantized(KvCaches.spec(c, dir.config().shape())))
                        .generate(List.of("KING:"), Generator.Options.greedy(10), null);
                tokens.add(out.results().getFirst().tokens());
            }
        }
        assertEquals(10, tokens.getFirst().length);
        assertArrayEquals(tokens.get(0), tokens.get(1), "ONNX Runtime and DJL continue alike");
    }
}
