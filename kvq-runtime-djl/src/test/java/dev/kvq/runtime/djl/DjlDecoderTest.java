package dev.kvq.runtime.djl;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.StoredLayer;
import dev.kvq.generate.spi.StoredRun;
import dev.kvq.testkit.Repo;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The TorchScript decoder through DJL, offline, on the demo model shipped with kvq. */
class DjlDecoderTest {
    @Test
    void decodeStepsEqualAFullForward() throws Exception {
        ModelDir dir = ModelDir.open(Repo.demoModel());
        try (Decoder d = new DjlRuntimeProvider().open(dir, "cpu"); Tokenizer tok = Tokenizers.load(dir)) {
            int[] ids = tok.encode(Files.readString(Repo.demoText()).substring(0, 80));
            float[][] full;
            try (DecodeSession s = new DecodeSession(d, List.of(CacheFactory.fullPrecision(dir.config().shape())
                    .newCache()))) {
                full = s.feed(new int[][] {ids}, true)[0];
            }
            double worst = 0;
            try (DecodeSession s = new DecodeSession(d, List.of(CacheFactory.fullPrecision(dir.config().shape())
                    .newCache()))) {
                s.feed(new int[][] {Arrays.copyOf(ids, 20)}, false);
                for (int i = 20; i < ids.length; i++) {
                    float[] step = s.feed(new int[][] {{ids[i]}}, false)[0][0];
                    for (int v = 0; v < step.length; v++) {
                        worst = Math.max(worst, Math.abs(step[v] - full[i][v]));
                    }
                }
            }
            double w = worst;
            assertTrue(worst <= 1e-4, () -> "max |logit difference| " + w);
            assertEquals("cpu", d.device());
        }
    }

    @Test
    void rejectsAModelThatDisagreesWithItsConfig(@TempDir Path tmp) throws Exception {
        Path bad = Files.createDirectories(tmp.resolve("bad"));
        Path demo = Repo.demoModel();
        Files.copy(demo.resolve("vocab.json"), bad.resolve("vocab.json"));
        Files.createSymbolicLink(bad.resolve("model.torchscript.pt"), demo.resolve("model.torchscript.pt"));
        Files.writeString(bad.resolve("config.json"), Files.readString(demo.resolve("config.json"))
                .replace("\"num_hidden_layers\": 4", "\"num_hidden_layers\": 3"));
        KvqException e = assertThrows(KvqException.class, () -> new DjlRuntimeProvider().open(ModelDir.open(bad), "cpu"));
        assertEquals(ErrorCode.MODEL_INVALID, e.code());
        assertTrue(e.getMessage().contains("does not follow kvq's TorchScript contract"), e.getMessage());
    }

    @Test
    void refusesAHistoryInTokenBlocksByName() throws Exception {
        ModelDir dir = ModelDir.open(Repo.demoModel());
        var config = dir.config();
        try (Decoder d = new DjlRuntimeProvider().open(dir, "cpu")) {
            StoredRun raw = StoredRun.raw(config.kvHeads(), d.halfKv(), config.headDim());
            List<StoredLayer> layers = java.util.Collections.nCopies(config.layers(),
                    new StoredLayer(List.of(raw), List.of(raw), 0));
            QuantizedPastLayout layout = new QuantizedPastLayout(config.kvHeads(), config.headDim(), layers)
                    .withTokenBlock(32);
            KvqException e = assertThrows(KvqException.class, () -> d.quantized(layout));
            assertEquals(ErrorCode.UNSUPPORTED, e.code());
            assertTrue(e.getMessage().contains("blocks of 32 tokens"), e.getMessage());
        }
    }
}
