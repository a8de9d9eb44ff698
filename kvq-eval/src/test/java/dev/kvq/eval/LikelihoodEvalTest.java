package dev.kvq.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.Runtimes;
import dev.kvq.testkit.Shared;
import java.nio.file.Files;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Perplexity through the cache on the held-out 10% of tiny-shakespeare with the shared model. */
class LikelihoodEvalTest {
    private static ModelDir dir;
    private static Decoder decoder;
    private static List<int[]> windows;

    @BeforeAll
    static void load() throws Exception {
        dir = ModelDir.open(Shared.require("models/shakespeare-char-llama"));
        String text = Files.readString(Shared.require("data/tinyshakespeare/input.txt"));
        decoder = Runtimes.discover().get("onnx").open(dir, "cpu");
        try (Tokenizer t = Tokenizers.load(dir)) {
            windows = TextWindows.of(t, text, 1003854, 256 * 6, 256);
        }
    }

    @AfterAll
    static void close() {
        if (decoder != null) {
            decoder.close();
        }
    }

    private static LikelihoodEval.Result run(KvQuantConfig c) {
        CacheFactory f = c == null ? CacheFactory.fullPrecision(dir.config().shape())
                : CacheFactory.quantized(KvCaches.spec(c, dir.config().shape()));
        return LikelihoodEval.run(decoder, f, windows, new LikelihoodEval.Options(32, 6, c != null), Progress.none());
    }

    @Test
    void fullPrecisionDecodeStepsGiveTheFullForwardPerplexity() {
        LikelihoodEval.Result fp = run(null);
        double reference = Math.exp(LikelihoodEval.fullForwardNll(decoder, windows, 32));
        System.out.printf("fp ppl %.5f, full-forward ppl %.5f over %d tokens%n", fp.ppl(), reference, fp.tokens());
        assertEquals(6 * (256 - 32 - 1), fp.tokens());
        assertEquals(reference, fp.ppl(), reference * 1e-3);
    }

    @Test
    void kv8IsWithinHalfAPercentAndKv2IsClearlyWorseThanKv4() {
        LikelihoodEval.Result kv8 = run(KvQuantConfig.perToken(8, 8).build());
        LikelihoodEval.Result kv4 = run(KvQuantConfig.perToken(4, 4).build());
        LikelihoodEval.Result kv2 = run(KvQuantConfig.perToken(2, 2).build());
        System.out.printf("ppl fp %.4f KV8 %.4f KV4 %.4f KV2 %.4f; KL %.2e %.2e %.2e; top-1 %.4f %.4f %.4f%n",
                kv8.fpPpl(), kv8.ppl(), kv4.ppl(), kv2.ppl(), kv8.meanKl(), kv4.meanKl(), kv2.meanKl(),
                kv8.top1Agreement(), kv4.top1Agreement(), kv2.top1Agreement());
        assertEquals(kv8.fpPpl(), kv8.ppl(), kv8.fpPpl() * 5e-3);
        assertTrue(kv2.ppl() > kv4.ppl() * 1.05, "KV2 " + kv2.ppl() + " vs KV4 " + kv4.ppl());
        assertTrue(kv8.meanKl() < kv4.meanKl() && kv4.meanKl() < kv2.meanKl());
        assertEquals(8.0, kv8.avgKeyBits());
        assertTrue(kv4.peakKvBytes() < kv8.peakKvBytes() && kv2.peakKvBytes() < kv4.peakKvBytes());
    }
}
