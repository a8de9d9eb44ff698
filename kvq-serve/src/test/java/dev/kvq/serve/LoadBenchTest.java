package dev.kvq.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.UnknownChars;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.testkit.Repo;
import java.nio.file.Files;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The load bench runs each cache under one budget; a 4-bit cache admits several times the sequences of float32. */
class LoadBenchTest {
    @Test
    void underOneBudgetKv4AdmitsAtLeastThreeTimesTheSequencesOfFullPrecision() throws Exception {
        Map<String, CacheFactory> configs = new LinkedHashMap<>();
        configs.put("fp32", CacheFactory.fullPrecision(TestServer.MODEL.config().shape()));
        configs.put("KV4", TestServer.perToken4());
        LoadBench.Options options = new LoadBench.Options(1L << 20, List.of(2, 8), 1, 16, 32, 64);
        List<LoadBench.Row> rows;
        try (Decoder decoder = Runtimes.discover().get("onnx").open(TestServer.MODEL, "cpu");
             Tokenizer tokenizer = Tokenizers.load(TestServer.MODEL, UnknownChars.ERROR)) {
            rows = LoadBench.run(decoder, tokenizer, configs, Files.readString(Repo.demoText()), options, r -> { });
        }
        assertEquals(4, rows.size());
        for (LoadBench.Row r : rows) {
            assertEquals(r.concurrency(), r.requests());
            assertEquals((long) r.requests() * 32, r.tokens(), "every request generated its tokens: " + r);
            assertTrue(r.peakSequences() <= Math.min(r.capacity(), r.concurrency()), "admission kept the budget: " + r);
            assertTrue(r.ttftP50() <= r.latencyP50() && r.ttftP50() <= r.ttftP99(), r.toString());
        }
        long fp = rows.getFirst().capacity();
        long kv4 = rows.get(2).capacity();
        assertTrue(fp >= 1 && kv4 >= 3 * fp, "KV4 admits " + kv4 + " sequences, float32 " + fp);
        assertEquals(configs.get("fp32").bytesHeldAfter(TestServer.MODEL.config().shape(), 16, 31, 0),
                rows.getFirst().reservationBytes());
    }
}
