package dev.kvq.runtime.onnx;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.Generator;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.SamplingParams;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.testkit.Shared;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Generation through the quantized cache on the shared shakespeare model, with ONNX Runtime on the CPU. */
class OnnxGenerationTest {
    private static ModelDir dir;
    private static Decoder decoder;
    private static Tokenizer tokenizer;
    private static String heldOut;

    @BeforeAll
    static void load() throws IOException {
        dir = ModelDir.open(Shared.require("models/shakespeare-char-llama"));
        heldOut = Files.readString(Shared.require("data/tinyshakespeare/input.txt")).substring(1003854);
        decoder = new OnnxRuntimeProvider().open(dir, "cpu");
        tokenizer = Tokenizers.load(dir);
    }

    @AfterAll
    static void close() {
        if (decoder != null) {
            decoder.close();
        }
    }

    private static CacheFactory quantized(KvQuantConfig c) {
        return CacheFactory.quantized(KvCaches.spec(c, dir.config().shape()));
    }

    private static List<String> prompts() {
        List<String> p = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            p.add(heldOut.substring(5_000 + i * 17_000, 5_000 + i * 17_000 + 40 + 7 * i));
        }
        return p;
    }

    /**
     * KV8 per-token greedy continuations (300 characters, five prompts) against full precision. Greedy agreement is
     * fragile on this model past its 256-token training context (see {@link AgreementStudy}: even a float16 cache
     * diverges on some prompts), so the test asserts what 8 bits must guarantee: every divergence starts at a near-tie
     * of the full-precision distribution (top-2 margin under 0.1 logit), teacher-forced top-1 agreement over the same
     * characters is at least 99%. Position-wise agreement is printed (0.936 under policy kvtuner, 0.887 under append when
     * this was written, each loss starting at a near-tie) and only guarded against gross failure (80%).
     */
    @Test
    void kv8GreedyContinuationsDivergeOnlyAtNearTies() {
        List<String> prompts = prompts();
        CacheFactory fp = CacheFactory.fullPrecision(dir.config().shape());
        CacheFactory kv8 = quantized(KvQuantConfig.perToken(8, 8).build());
        var a = new Generator(decoder, tokenizer, fp).generate(prompts, Generator.Options.greedy(300), null);
        var b = new Generator(decoder, tokenizer, kv8).generate(prompts, Generator.Options.greedy(300), null);
        int same = 0;
        int top1 = 0;
        for (int i = 0; i < prompts.size(); i++) {
            String x = a.results().get(i).text();
            String y = b.results().get(i).text();
            assertEquals(300, x.length());
            int div = -1;
            for (int c = 0; c < x.length(); c++) {
                if (c < y.length() && x.charAt(c) == y.charAt(c)) {
                    same++;
                } else if (div < 0) {
                    div = c;
                }
            }
            int[] ids = tokenizer.encode(prompts.get(i) + x);
            int promptLength = ids.length - x.length();
            float[][] ref = teacherForced(fp, ids, promptLength);
            float[][] q = teacherForced(kv8, ids, promptLength);
            for (int k = 0; k < ref.length; k++) {
                top1 += dev.kvq.generate.Sampler.argmax(ref[k]) == dev.kvq.generate.Sampler.argmax(q[k]) ? 1 : 0;
            }
            if (div >= 0) {
                float[] sorted = ref[div].clone();
                java.util.Arrays.sort(sorted);
                float margin = sorted[sorted.length - 1] - sorted[sorted.length - 2];
                System.out.printf("prompt %d: first divergence at character %d, full-precision top-2 margin %.4f%n", i,
                        div, margin);
                assertTrue(margin < 0.1f, "prompt " + i + " diverged at a confident choice (margin " + margin + ")");
            }
        }
        double agreement = same / 1500.0;
        double teacherForced = top1 / 1500.0;
        System.out.printf("KV8 per-token vs fp: greedy agreement %.4f, teacher-forced top-1 agreement %.4f%n", agreement,
                teacherForced);
        assertTrue(teacherForced >= 0.99, "teacher-forced top-1 agreement " + teacherForced);
        assertTrue(agreement >= 0.80, "greedy agreement " + agreement);
        assertTrue(b.stats().kvBytes() < a.stats().kvBytes() / 3, "8-bit cache holds under a third of float32");
    }

    @Test
    void klDivergenceOrdersBitWidths() {
        double kl8 = meanKl(KvQuantConfig.perToken(8, 8).build());
        double kl4 = meanKl(KvQuantConfig.perToken(4, 4).build());
        double kl2 = meanKl(KvQuantConfig.perToken(2, 2).build());
        System.out.printf("mean next-token KL vs fp: KV8 %.6f, KV4 %.6f, KV2 %.6f%n", kl8, kl4, kl2);
        assertTrue(kl8 < kl4 && kl4 < kl2, "KV8 " + kl8 + " KV4 " + kl4 + " KV2 " + kl2);
    }

    /** Mean KL(fp || quantized) of next-token distributions over 2 windows of 160 tokens after a 32-token prefill. */
    private static double meanKl(KvQuantConfig config) {
        double sum = 0;
        int n = 0;
        for (int w = 0; w < 2; w++) {
            int[] ids = tokenizer.encode(heldOut.substring(w * 20_000, w * 20_000 + 160));
            float[][] ref = teacherForced(CacheFactory.fullPrecision(dir.config().shape()), ids);
            float[][] q = teacherForced(quantized(config), ids);
            for (int i = 0; i < ref.length; i++) {
                sum += kl(ref[i], q[i]);
                n++;
            }
        }
        return sum / n;
    }

    private static float[][] teacherForced(CacheFactory caches, int[] ids) {
        return teacherForced(caches, ids, 32);
    }

    /** Logits predicting tokens {@code [prefill, ids.length)}: one prefill, then one decode step per token. */
    private static float[][] teacherForced(CacheFactory caches, int[] ids, int prefill) {
        float[][] out = new float[ids.length - prefill][];
        try (DecodeSession s = new DecodeSession(decoder, List.of(caches.newCache()))) {
            out[0] = s.feed(new int[][] {java.util.Arrays.copyOf(ids, prefill)}, false)[0][0];
            for (int i = prefill; i < ids.length - 1; i++) {
                out[i - prefill + 1] = s.feed(new int[][] {{ids[i]}}, false)[0][0];
            }
        }
        return out;
    }

    static double kl(float[] p, float[] q) {
        double[] lp = logSoftmax(p);
        double[] lq = logSoftmax(q);
        double s = 0;
        for (int i = 0; i < p.length; i++) {
            s += Math.exp(lp[i]) * (lp[i] - lq[i]);
        }
        return s;
    }

    static double[] logSoftmax(float[] x) {
        double log = dev.kvq.generate.Logits.logSumExp(x);
        double[] out = new double[x.length];
        for (int i = 0; i < x.length; i++) {
            out[i] = x[i] - log;
        }
        return out;
    }

    @Test
    void aLeftPaddedBatchGivesEachSequenceWhatItGetsAlone() {
        List<String> prompts = prompts();
        CacheFactory caches = quantized(KvQuantConfig.kivi(4, 2).build());
        var batch = new Generator(decoder, tokenizer, caches).generate(prompts, Generator.Options.greedy(60), null);
        for (int i = 0; i < prompts.size(); i++) {
            var alone = new Generator(decoder, tokenizer, caches).generate(List.of(prompts.get(i)),
                    Generator.Options.greedy(60), null);
            assertEquals(alone.results().getFirst().text(), batch.results().get(i).text(), "prompt " + i);
        }
    }

    @Test
    void samplingIsReproducibleWithASeedAndStopsAtStopStrings() {
        var opts = new Generator.Options(80, new SamplingParams(0.9, 20, 0.95, 42), List.of());
        CacheFactory fp = CacheFactory.fullPrecision(dir.config().shape());
        String a = new Generator(decoder, tokenizer, fp).generate(List.of("ROMEO:\n"), opts, null).results().getFirst().text();
        String b = new Generator(decoder, tokenizer, fp).generate(List.of("ROMEO:\n"), opts, null).results().getFirst().text();
        String c = new Generator(decoder, tokenizer, fp).generate(List.of("ROMEO:\n"),
                new Generator.Options(80, new SamplingParams(0.9, 20, 0.95, 43), List.of()), null).results().getFirst().text();
        assertEquals(a, b);
        assertNotEquals(a, c);
        var stopped = new Generator(decoder, tokenizer, fp).generate(List.of("ROMEO:\n"),
                new Generator.Options(200, SamplingParams.greedy(), List.of("\n")), null).results().getFirst();
        assertEquals("stop", stopped.stopReason());
        assertTrue(!stopped.text().contains("\n") && !stopped.text().isEmpty(), stopped.text());
    }

    @Test
    void rejectsCharactersOutsideTheVocabulary() {
        KvqException e = assertThrows(KvqException.class, () -> new Generator(decoder, tokenizer,
                CacheFactory.fullPrecision(dir.config().shape())).generate(List.of("Café"), Generator.Options.greedy(5), null));
        assertEquals(ErrorCode.TOKENIZER, e.code());
        assertTrue(e.getMessage().contains("'é' (U+00E9) at character 3"), e.getMessage());
    }

    @Test
    void rejectsAConfigTheBackendCannotRun() {
        KvqException e = assertThrows(KvqException.class,
                () -> quantized(KvQuantConfig.builder().groupSize(48).residualLength(0).build()));
        assertTrue(e.getMessage().contains("q_group_size (48) must divide head_dim (64)"), e.getMessage());
    }

    @Test
    void rejectsMissingFilesAndModelsThatDisagreeWithTheirConfig(@TempDir Path tmp) throws IOException {
        KvqException missing = assertThrows(KvqException.class, () -> ModelDir.open(tmp.resolve("nope")));
        assertEquals(ErrorCode.MODEL_INVALID, missing.code());
        Files.createDirectories(tmp.resolve("bad"));
        Files.copy(dir.root().resolve("vocab.json"), tmp.resolve("bad/vocab.json"));
        Files.writeString(tmp.resolve("bad/config.json"), Files.readString(dir.root().resolve("config.json"))
                .replace("\"num_hidden_layers\": 8", "\"num_hidden_layers\": 6"));
        ModelDir bad = ModelDir.open(tmp.resolve("bad"));
        KvqException noOnnx = assertThrows(KvqException.class, () -> new OnnxRuntimeProvider().open(bad, "cpu"));
        assertTrue(noOnnx.getMessage().contains("has no model.onnx"), noOnnx.getMessage());
        Files.createSymbolicLink(tmp.resolve("bad/model.onnx"), dir.root().resolve("model.onnx"));
        KvqException layers = assertThrows(KvqException.class, () -> new OnnxRuntimeProvider().open(bad, "cpu"));
        assertEquals(ErrorCode.MODEL_INVALID, layers.code());
        assertTrue(layers.getMessage().contains("8 layers of past_key_values inputs but config.json says num_hidden_layers 6"),
                layers.getMessage());
        Files.writeString(tmp.resolve("bad/config.json"), Files.readString(dir.root().resolve("config.json"))
                .replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 4"));
        KvqException heads = assertThrows(KvqException.class,
                () -> new OnnxRuntimeProvider().open(ModelDir.open(tmp.resolve("bad")), "cpu"));
        assertTrue(heads.getMessage().contains("has 2 KV heads but config.json says num_key_value_heads 4"),
                heads.getMessage());
    }

    @Test
    void perStepPlumbingKeepsPresentTokensApartFromPadding() {
        int[] ids = tokenizer.encode(heldOut.substring(100, 160));
        try (DecodeSession s = new DecodeSession(decoder, List.of(CacheFactory.fullPrecision(dir.config().shape())
                .newCache(), CacheFactory.fullPrecision(dir.config().shape()).newCache()))) {
            float[][][] out = s.feed(new int[][] {ids, java.util.Arrays.copyOfRange(ids, 20, 60)}, false);
            assertEquals(60, s.length(0));
            assertEquals(40, s.length(1));
            float[][][] next = s.feed(new int[][] {{ids[5]}, {ids[5]}}, false);
            assertEquals(61, s.length(0));
            assertEquals(2, next.length);
            assertArrayEquals(new int[] {1, 1}, new int[] {out[0].length, out[1].length});
        }
    }
}
