package dev.kvq.eval;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.Placement;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.testkit.Repo;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** How {@code kvq bench} prefills a batch whose caches live on the device. */
class BenchTest {
    /** Under placement device a batch's prompts longer than a chunk are prefilled together and hold every token. */
    @Test
    void aDeviceBatchPrefilledInChunksHoldsWhatTheHostsHolds() {
        ModelDir dir = ModelDir.open(Repo.demoModel());
        KvQuantConfig host = KvQuantConfig.kivi(4, 2).scaleDtype("float16").build();
        Map<String, CacheFactory> configs = new LinkedHashMap<>();
        configs.put("host", CacheFactory.quantized(KvCaches.spec(host, dir.config().shape())));
        configs.put("device", CacheFactory.quantized(KvCaches.spec(host.toBuilder().placement(Placement.DEVICE).build(),
                dir.config().shape())));
        int[] tokens = new int[300];
        for (int i = 0; i < tokens.length; i++) {
            tokens[i] = 1 + (i * 7) % (dir.config().vocabSize() - 1);
        }
        try (Decoder d = Runtimes.discover().get("onnx").open(dir, "cpu")) {
            assertEquals(Long.MAX_VALUE, d.maxAttentionScores(), "ONNX Runtime's CPU provider has no limit");
            List<Bench.Row> rows = Bench.run(d, configs, new int[] {200}, tokens, 6, 0, 3, 48, Progress.none());
            Bench.Row onHost = rows.get(0);
            Bench.Row onDevice = rows.get(1);
            assertEquals(Placement.DEVICE, onDevice.placement());
            assertEquals(onHost.tokensHeld(), onDevice.tokensHeld());
            assertEquals(onHost.bytesHeld(), onDevice.bytesHeld());
            assertTrue(onDevice.deviceBytes() > 0);
            assertEquals(200 + 6, onHost.tokensHeld(), "the prompt and the timed steps");
            // untimed warm-up steps come between the prefill and the timed steps: the caches hold them too
            Bench.Row warmed = Bench.run(d, Map.of("host", configs.get("host")), new int[] {200}, tokens, 5, 6, 0, 3,
                    48, Progress.none()).getFirst();
            assertEquals(200 + 5 + 6, warmed.tokensHeld());
            assertEquals(200, warmed.context());
        }
    }
}
