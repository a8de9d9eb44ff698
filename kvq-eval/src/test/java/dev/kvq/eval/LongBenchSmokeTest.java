package dev.kvq.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.CharTokenizer;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.UnknownChars;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.testkit.Repo;
import dev.kvq.testkit.Shared;
import java.util.List;
import org.junit.jupiter.api.Test;

/** Two examples of two LongBench tasks through the quantized cache of the demo model: the harness end to end. */
class LongBenchSmokeTest {
    @Test
    void runsTwoExamplesPerTask() {
        var data = Shared.require("data/longbench");
        List<LongBench.Task> tasks = LongBench.load(data, List.of("passage_retrieval_zh", "multifieldqa_en"), 2);
        ModelDir dir = ModelDir.open(Repo.demoModel());
        CacheFactory kv4 = CacheFactory.quantized(KvCaches.spec(KvQuantConfig.kivi(4, 4).build(), dir.config().shape()));
        try (Decoder d = Runtimes.discover().get("onnx").open(dir, "cpu");
             CharTokenizer tok = (CharTokenizer) Tokenizers.load(dir, UnknownChars.replaceWith(" "))) {
            for (LongBench.Task t : tasks) {
                LongBench.TaskResult r = LongBench.run(d, tok, kv4, t, 300, 2, tok::replaced, Progress.none());
                assertEquals(2, r.n());
                assertEquals(2, r.predictions().size());
                // the task's score is 100 x the mean of each prediction's metric against its example, to 2 decimals
                double sum = 0;
                for (int i = 0; i < 2; i++) {
                    sum += LongBench.score(t.name(), r.predictions().get(i), t.examples().get(i));
                }
                assertEquals(Math.round(100 * 100.0 * sum / 2) / 100.0, r.score());
                assertEquals(t.name().equals("passage_retrieval_zh") ? "retrieval_zh" : "qa_f1", r.metric());
                assertTrue(r.replacedCharacters() > 0, "LongBench text holds characters outside the vocabulary");
                assertTrue(r.predictions().stream().allMatch(p -> p.length() <= t.maxNewTokens()));
            }
        }
    }
}
