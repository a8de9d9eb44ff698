package dev.kvq.runtime.onnx;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.testkit.Shared;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/** With the full-precision cache, the logits of every decode step equal a full-sequence forward within 1e-4. */
class OnnxParityTest {
    @Test
    void decodeStepsEqualAFullForward() throws Exception {
        Path model = Shared.require("models/shakespeare-char-llama");
        Path text = Shared.require("data/tinyshakespeare/input.txt");
        ModelDir dir = ModelDir.open(model);
        try (Decoder decoder = new OnnxRuntimeProvider().open(dir, "cpu"); Tokenizer tok = Tokenizers.load(dir)) {
            int[] ids = tok.encode(Files.readString(text).substring(1003854, 1003854 + 120));
            float[][] full;
            try (DecodeSession s = new DecodeSession(decoder, List.of(CacheFactory.fullPrecision(dir.config().shape())
                    .newCache()))) {
                full = s.feed(new int[][] {ids}, true)[0];
            }
            int prefill = 17;
            double worst = 0;
            try (DecodeSession s = new DecodeSession(decoder, List.of(CacheFactory.fullPrecision(dir.config().shape())
                    .newCache()))) {
                float[][] first = s.feed(new int[][] {java.util.Arrays.copyOf(ids, prefill)}, true)[0];
                for (int i = 0; i < prefill; i++) {
                    worst = Math.max(worst, maxDiff(full[i], first[i]));
                }
                for (int i = prefill; i < ids.length; i++) {
                    float[] step = s.feed(new int[][] {{ids[i]}}, false)[0][0];
                    worst = Math.max(worst, maxDiff(full[i], step));
                }
            }
            double w = worst;
            assertTrue(worst <= 1e-4, () -> "max |logit difference| " + w);
        }
    }

    static double maxDiff(float[] a, float[] b) {
        double m = 0;
        for (int i = 0; i < a.length; i++) {
            m = Math.max(m, Math.abs(a[i] - b[i]));
        }
        return m;
    }
}
