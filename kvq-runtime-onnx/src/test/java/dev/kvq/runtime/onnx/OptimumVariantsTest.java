package dev.kvq.runtime.onnx;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.Generator;
import dev.kvq.generate.HfTokenizer;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.spi.Decoder;
import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The export variants Optimum produces for real models, on tiny decoders exported by tools/export_test_models.py
 * (one set of random weights, a byte-level BPE tokenizer.json): no {@code position_ids} input, float16 KV, and a
 * merged decoder with {@code use_cache_branch}. Each must give the base export's logits through kvq's loop.
 */
class OptimumVariantsTest {
    static Path fixture(String name) {
        try {
            return Path.of(OptimumVariantsTest.class.getResource("/tiny-models/" + name).toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Logits of a 9-token prefill (last position), then 6 decode steps, for a left-padded batch of two. */
    static float[][] run(String variant, CacheFactory caches, int[][] prompts) {
        ModelDir dir = ModelDir.open(fixture(variant));
        try (Decoder d = new OnnxRuntimeProvider().open(dir, "cpu");
             DecodeSession s = new DecodeSession(d, List.of(caches.newCache(), caches.newCache()))) {
            float[][] out = new float[2 * 7][];
            float[][][] l = s.feed(prompts, false);
            out[0] = l[0][0];
            out[1] = l[1][0];
            for (int step = 1; step < 7; step++) {
                l = s.feed(new int[][] {{(step * 37) % 300}, {(step * 11) % 300}}, false);
                out[2 * step] = l[0][0];
                out[2 * step + 1] = l[1][0];
            }
            return out;
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"no-position-ids", "fp16-kv", "merged"})
    void variantMatchesTheBaseExport(String variant) {
        ModelDir base = ModelDir.open(fixture("base"));
        CacheFactory fp = CacheFactory.fullPrecision(base.config().shape());
        int[][] prompts = {{5, 17, 260, 33, 90, 1, 2, 3, 4}, {44, 55, 66, 77, 88}};
        float[][] expected = run("base", fp, prompts);
        float[][] actual = run(variant, fp, prompts);
        // float16 KV rounds the past at every step; the others compute exactly what the base export computes
        double tol = variant.equals("fp16-kv") ? 5e-2 : 1e-4;
        for (int i = 0; i < expected.length; i++) {
            for (int v = 0; v < expected[i].length; v++) {
                double diff = Math.abs(expected[i][v] - actual[i][v]);
                int row = i;
                int col = v;
                assertTrue(diff <= tol, () -> variant + " row " + row + " logit " + col + " differs by " + diff);
            }
        }
        if (variant.equals("fp16-kv")) {
            try (Decoder d = new OnnxRuntimeProvider().open(ModelDir.open(fixture(variant)), "cpu")) {
                assertTrue(((OnnxDecoder) d).halfKv());
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"base", "merged", "no-position-ids"})
    void generatesThroughAQuantizedCacheWithAHuggingFaceTokenizer(String variant) {
        ModelDir dir = ModelDir.open(fixture(variant));
        try (Decoder d = new OnnxRuntimeProvider().open(dir, "cpu"); Tokenizer tok = Tokenizers.load(dir)) {
            assertTrue(tok instanceof HfTokenizer, tok.describe());
            int[] ids = tok.encode("ROMEO: But soft, what light");
            assertTrue(ids.length > 2 && ids.length < 27, "BPE merges characters: " + ids.length + " tokens");
            assertEquals("ROMEO: But soft, what light", tok.decode(ids));
            CacheFactory kv4 = CacheFactory.quantized(KvCaches.spec(KvQuantConfig.kivi(4, 4).groupSize(16)
                    .residualLength(16).build(), dir.config().shape()));
            var out = new Generator(d, tok, kv4).generate(List.of("ROMEO: But soft", "JULIET:"),
                    Generator.Options.greedy(24), null);
            for (var r : out.results()) {
                assertEquals(24, r.tokens().length, r.stopReason());
                assertEquals(tok.decode(r.tokens()), r.text());
            }
            assertTrue(out.stats().kvBytes() > 0 && out.stats().kvBytes() < out.stats().kvBytesFp16() * 2);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"base"})
    void tokenizerRoundTripsUnicode(String variant) {
        try (Tokenizer tok = Tokenizers.load(ModelDir.open(fixture(variant)))) {
            int[] ids = tok.encode("naïve café — ok");
            assertEquals("naïve café — ok", tok.decode(ids));
            assertArrayEquals(ids, tok.encode(tok.decode(ids)));
        }
    }
}
