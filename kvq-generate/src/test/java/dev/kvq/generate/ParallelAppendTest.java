package dev.kvq.generate;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.cache.KvCache;
import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.tensor.KvView;
import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Prompts fed together reach their caches in parallel when the step allows it: every cache ends up holding exactly
 * what it holds when the same feed is appended sequence by sequence, prompts, empty rows and decode steps alike.
 */
class ParallelAppendTest {
    @Test
    void parallelAppendsLeaveEveryCacheAsSequentialOnesDo() {
        int[][] prompts = {tokens(900, 1), tokens(733, 2), new int[0], tokens(857, 3), tokens(12, 4)};
        List<float[]> sequential = histories(prompts, false);
        List<float[]> parallel = histories(prompts, true);
        assertEquals(sequential.size(), parallel.size());
        for (int i = 0; i < sequential.size(); i++) {
            assertArrayEquals(sequential.get(i), parallel.get(i), "cache " + i);
        }
        long values = (long) java.util.Arrays.stream(prompts).mapToInt(p -> p.length).sum() * CountingDecoder.DIM;
        assertTrue(values >= DecodeSession.PARALLEL_APPEND_VALUES, "the prompts are long enough to go in parallel");
    }

    /** Feeds the prompts, then two decode steps; returns every cache's materialized keys and values. */
    private static List<float[]> histories(int[][] prompts, boolean concurrentViews) {
        var spec = KvCaches.spec(KvQuantConfig.perToken(4, 4).groupSize(2).build(),
                new dev.kvq.config.ModelShape(1, 1, CountingDecoder.DIM));
        List<float[]> out = new ArrayList<>();
        try (CountingDecoder d = new CountingDecoder(300, List.of(), 1024)) {
            d.concurrentViews = concurrentViews;
            List<KvCache> caches = new ArrayList<>();
            for (int i = 0; i < prompts.length; i++) {
                caches.add(spec.newCache());
            }
            try (DecodeSession s = new DecodeSession(d, caches); Arena arena = Arena.ofConfined()) {
                s.feed(prompts, false);
                for (int step = 0; step < 2; step++) {
                    int[][] next = new int[prompts.length][];
                    for (int b = 0; b < next.length; b++) {
                        next[b] = new int[] {(b * 31 + step * 7) % 300};
                    }
                    s.feed(next, false);
                }
                for (KvCache c : caches) {
                    KvView k = KvView.allocate(arena, 1, c.length(0), CountingDecoder.DIM);
                    KvView v = KvView.allocate(arena, 1, c.length(0), CountingDecoder.DIM);
                    c.materialize(0, k, v);
                    out.add(k.toArray());
                    out.add(v.toArray());
                }
            }
        }
        return out;
    }

    private static int[] tokens(int n, int seed) {
        int[] t = new int[n];
        for (int i = 0; i < n; i++) {
            t[i] = (i * 13 + seed * 101) % 300;
        }
        return t;
    }
}
