package dev.kvq.lib;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.testkit.Repo;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The library's entry point on the demo model. */
class KvqTest {
    private static final Path MODEL = Repo.demoModel();

    @Test
    void aBatchStreamsEachSequencesTextAndGivesWhatEachPromptGivesAlone() {
        try (Kvq kvq = Kvq.open(MODEL, KvQuantConfig.perToken(4, 4).build())) {
            List<String> prompts = List.of("ROMEO:\n", "JULIET:\nO Romeo");
            StringBuilder[] streamed = {new StringBuilder(), new StringBuilder()};
            int[] tokens = new int[2];
            Generation batch = kvq.generate(prompts, GenerateOptions.greedy(40), (seq, token, text) -> {
                streamed[seq].append(text);
                tokens[seq]++;
            });
            for (int i = 0; i < 2; i++) {
                Generation.Completion c = batch.completions().get(i);
                assertEquals(c.text(), streamed[i].toString());
                assertEquals(40, tokens[i]);
                assertEquals("length", c.stopReason());
                Generation alone = kvq.generate(prompts.get(i), GenerateOptions.greedy(40));
                assertEquals(alone.text(), c.text(), "prompt " + i);
                assertArrayEquals(alone.completions().getFirst().tokens(), c.tokens());
            }
            assertTrue(batch.kvBytes() < batch.kvBytesFp16(), "4-bit caches hold less than float16");
        }
    }

    @Test
    void samplingIsReproducibleBySeedAndStopsAtAStopString() {
        try (Kvq kvq = Kvq.open(MODEL)) {
            GenerateOptions sampled = GenerateOptions.sampled(60, 0.9, 0.95, 3).withTopK(20);
            String a = kvq.generate("KING:\n", sampled).text();
            assertEquals(a, kvq.generate("KING:\n", sampled).text());
            assertNotEquals(a, kvq.generate("KING:\n", GenerateOptions.sampled(60, 0.9, 0.95, 4).withTopK(20)).text());
            Generation stopped = kvq.generate("KING:\n", GenerateOptions.greedy(200).withStop("\n"));
            assertEquals("stop", stopped.completions().getFirst().stopReason());
            assertTrue(!stopped.text().contains("\n") && !stopped.text().isEmpty(), stopped.text());
        }
    }

    @Test
    void aConfigurationFileAndAFullPrecisionCacheAreChosenAtOpen() throws Exception {
        Path mixed = MODEL.resolve("kv-mixed.yaml");
        try (Kvq kvq = Kvq.open(MODEL, mixed)) {
            assertEquals(3.5, kvq.info().averageBits(), 1e-12);
            assertEquals("onnx", kvq.info().runtime());
            assertEquals(4, kvq.info().layers());
        }
        String text = Files.readString(Repo.demoText()).substring(0, 1500);
        try (Kvq fp = Kvq.builder(MODEL).fullPrecision().threads(1).open()) {
            assertEquals(32, fp.info().averageBits());
            Perplexity p = fp.perplexity(text, PerplexityOptions.defaults().withWindow(128, 16).withoutFullPrecision());
            assertNull(p.fullPrecisionPerplexity());
            assertNull(p.top1Agreement());
            assertTrue(p.perplexity() > 1 && p.perplexity() < 10, "perplexity " + p.perplexity());
            assertEquals(p.windows() * (128 - 16 - 1), p.tokens());
            // full precision beside itself: the same perplexity, no divergence, the same choices everywhere
            Perplexity both = fp.perplexity(text, PerplexityOptions.defaults().withWindow(128, 16));
            assertEquals(p.perplexity(), both.perplexity(), 1e-12);
            assertEquals(both.perplexity(), both.fullPrecisionPerplexity(), 1e-12);
            assertEquals(1.0, both.top1Agreement());
        }
    }

    @Test
    void aClosedKvqRefusesWorkAndBadConfigurationsFailBeforeTheModelLoads() {
        Kvq kvq = Kvq.open(MODEL);
        kvq.close();
        kvq.close();
        KvqException closed = assertThrows(KvqException.class, () -> kvq.generate("x", GenerateOptions.greedy(1)));
        assertEquals(ErrorCode.CLOSED, closed.code());
        KvqException group = assertThrows(KvqException.class, () -> Kvq.open(MODEL,
                KvQuantConfig.perToken(4, 4).groupSize(48).build()));
        assertTrue(group.getMessage().contains("48"), group.getMessage());
        KvqException runtime = assertThrows(KvqException.class, () -> Kvq.open(MODEL,
                KvQuantConfig.perToken(4, 4).runtime("nope").build()));
        assertTrue(runtime.getMessage().contains("nope"), runtime.getMessage());
    }
}
