package dev.kvq.runtime.onnx;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.Placement;
import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.spi.ForwardingDecoder;
import dev.kvq.generate.spi.Step;
import dev.kvq.generate.spi.StepInput;
import dev.kvq.testkit.Numeric;
import dev.kvq.testkit.Repo;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * A feed whose attention scores would pass the runtime's limit ({@link Decoder#maxAttentionScores()}: 2^31 on ONNX
 * Runtime's CUDA provider) runs in chunks of new tokens, and gives what one step gives: every position's logits of a
 * left-padded batch of two prompts, on the float32 cache on the host and the full-precision cache on the device, then
 * the decode steps after it. Here the limit is made small so that the demo model's prompts split into chunks of 7.
 */
class ChunkedFeedTest {
    @Test
    void aFeedSplitForTheRuntimesLimitGivesTheLogitsOfOneStep() {
        ModelDir dir = ModelDir.open(Repo.demoModel());
        try (Decoder whole = new OnnxRuntimeProvider().open(dir, "cpu")) {
            int[][] prompts = {ids(53, 3), ids(29, 11)};
            // 2 rows x heads x 7 new tokens x up to 53 + 1 decode positions (+ slack for the device's rounding)
            long limit = 2L * whole.config().attentionHeads() * 7 * (53 + 1 + 16 + 7);
            Decoder chunked = new Limited(whole, limit);
            for (Placement placement : Placement.values()) {
                CacheFactory caches = CacheFactory.fullPrecision(dir.config().shape(), placement);
                List<float[]> expected = run(whole, caches, prompts);
                List<float[]> actual = run(chunked, caches, prompts);
                assertEquals(expected.size(), actual.size(), placement + ": one logits row per fed position");
                for (int i = 0; i < expected.size(); i++) {
                    double diff = Numeric.maxRelativeDiff(expected.get(i), actual.get(i));
                    int row = i;
                    assertTrue(diff <= 1e-4, () -> placement + ", row " + row + ": differs by " + diff);
                }
            }
            // quantized on the host: the later chunks read the earlier ones quantized, as decode steps do
            CacheFactory kv8 = CacheFactory.quantized(KvCaches.spec(KvQuantConfig.perToken(8, 8).build(),
                    dir.config().shape()));
            List<float[]> expected = run(whole, kv8, prompts);
            List<float[]> actual = run(chunked, kv8, prompts);
            assertEquals(expected.size(), actual.size());
            double last = Numeric.maxRelativeDiff(expected.getLast(), actual.getLast());
            assertTrue(last <= 2e-2, "per-token KV8, last decode step: differs by " + last);
        }
    }

    private static int[] ids(int n, int seed) {
        int[] a = new int[n];
        for (int i = 0; i < n; i++) {
            a[i] = 1 + (i * 13 + seed) % 60;
        }
        return a;
    }

    /** Every fed position's logits of the prompts, then 3 decode steps' logits of each sequence. */
    private static List<float[]> run(Decoder decoder, CacheFactory caches, int[][] prompts) {
        List<float[]> out = new ArrayList<>();
        try (DecodeSession s = caches.session(decoder, prompts.length)) {
            float[][][] logits = s.feed(prompts, true);
            for (float[][] sequence : logits) {
                out.addAll(List.of(sequence));
            }
            for (int step = 0; step < 3; step++) {
                logits = s.feed(new int[][] {{5 + step}, {9 + step}}, false);
                for (float[][] sequence : logits) {
                    out.add(sequence[0]);
                }
            }
        }
        return out;
    }

    /** {@code inner} with a limit on a step's attention scores (never closed: it shares the test's decoder). */
    private static final class Limited extends ForwardingDecoder {
        private final long limit;

        Limited(Decoder inner, long limit) {
            super(inner);
            this.limit = limit;
        }

        @Override
        public long maxAttentionScores() {
            return limit;
        }

        @Override
        public Step forward(StepInput input) {
            assertTrue((long) input.batch() * delegate.config().attentionHeads() * input.tokens()
                    * (input.pastLength() + input.tokens()) <= limit, "a step within the limit");
            return delegate.forward(input);
        }
    }
}
