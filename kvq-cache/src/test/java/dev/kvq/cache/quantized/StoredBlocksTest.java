package dev.kvq.cache.quantized;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.cache.StoredHistory;
import dev.kvq.config.CachePolicy;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.ModelShape;
import dev.kvq.spi.PackedBlock;
import dev.kvq.tensor.KvView;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@link StoredHistory#blocks} visits exactly the blocks holding tokens at or after {@code fromToken}, oldest first,
 * whatever {@code fromToken} is: the suffix of the full list that starts with the block holding it, contiguous, up
 * to the quantized length, with the tail being filled last. (It finds them from the end, so a device sync does not
 * walk the history every step.)
 */
class StoredBlocksTest {
    private static final ModelShape SHAPE = new ModelShape(1, 2, 64);

    private record Visit(PackedBlock block, int first, int filled) {
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 32})
    void aVisitFromAnyTokenIsTheSuffixThatHoldsIt(int residual) {
        KvQuantConfig c = KvQuantConfig.perToken(4, 4).policy(CachePolicy.APPEND).residualLength(residual)
                .groupSize(32).build();
        Random rnd = new Random(residual + 5);
        try (QuantizedKvCache cache = KvCaches.open(c, SHAPE)) {
            append(cache, rnd, 40); // a prefill, then single tokens through tails (residual 0) or the residual
            for (int step = 0; step < 75; step++) {
                StoredHistory history = cache.stored(0);
                int quantized = history.quantizedTokens();
                for (boolean keys : new boolean[] {true, false}) {
                    List<Visit> all = visits(history, keys, 0);
                    int end = 0;
                    for (Visit v : all) {
                        assertEquals(end, v.first(), "blocks are contiguous");
                        end += v.filled();
                    }
                    assertEquals(quantized, end, "the blocks hold the quantized tokens");
                    for (int from = 0; from <= quantized + 1; from++) {
                        List<Visit> some = visits(history, keys, from);
                        int skipped = all.size() - some.size();
                        assertEquals(all.subList(skipped, all.size()), some, "a suffix from token " + from);
                        if (from < quantized) {
                            Visit first = some.getFirst();
                            assertTrue(first.first() <= from && from < first.first() + first.filled(),
                                    "the first block visited holds token " + from);
                        } else {
                            assertTrue(some.isEmpty(), "nothing at or after token " + from);
                        }
                    }
                }
                append(cache, rnd, 1);
            }
        }
    }

    private static List<Visit> visits(StoredHistory history, boolean keys, int from) {
        List<Visit> out = new ArrayList<>();
        history.blocks(0, keys, from, (block, first, filled) -> out.add(new Visit(block, first, filled)));
        return out;
    }

    private static void append(QuantizedKvCache cache, Random rnd, int tokens) {
        float[] k = new float[SHAPE.kvHeads() * tokens * SHAPE.headDim()];
        float[] v = new float[k.length];
        for (int i = 0; i < k.length; i++) {
            k[i] = (float) rnd.nextGaussian();
            v[i] = (float) rnd.nextGaussian();
        }
        cache.append(0, KvView.of(k, SHAPE.kvHeads(), tokens, SHAPE.headDim()),
                KvView.of(v, SHAPE.kvHeads(), tokens, SHAPE.headDim()));
    }
}
