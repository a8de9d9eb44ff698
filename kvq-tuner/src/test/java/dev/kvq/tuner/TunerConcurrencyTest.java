package dev.kvq.tuner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.config.CachePolicy;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.LayerBits;
import dev.kvq.config.ModelShape;
import dev.kvq.eval.Progress;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.moeaframework.core.PRNG;

/**
 * Searches in one JVM are isolated: the same seed gives the same result alone and beside another search, each
 * configuration is scored once per search, and a search neither reseeds nor draws from MOEA Framework's generator of
 * the thread that runs it. The scorer is synthetic (a sum over layers with one interaction term, a millisecond or two
 * per call so that evaluations interleave), so the test runs no model.
 */
class TunerConcurrencyTest {
    private static final int LAYERS = 5;
    private static final ModelShape SHAPE = new ModelShape(LAYERS, 2, 64);
    private static final KvQuantConfig BASE = Schemes.base("per-token-asym", "vanilla", 64, CachePolicy.APPEND).build();
    private static final Tuner.Options OPTIONS = new Tuner.Options(3.5, 60, 7, 2);

    /** Every layer its own group with all nine pairs: 9^5 configurations, far more than the budget. */
    private static Profile profile() {
        List<Profile.LayerProfile> layers = new ArrayList<>();
        List<Profile.Group> groups = new ArrayList<>();
        List<String> pairs = Pair.KVTUNER.stream().map(Pair::name).toList();
        for (int l = 0; l < LAYERS; l++) {
            Map<String, Profile.Errors> errors = new LinkedHashMap<>();
            for (Pair p : Pair.KVTUNER) {
                double kl = layerKl(l, p.bits());
                errors.put(p.name(), new Profile.Errors(kl, kl, kl, kl));
            }
            layers.add(new Profile.LayerProfile(l, errors, pairs));
            groups.add(new Profile.Group(List.of(l), pairs));
        }
        return new Profile("synthetic", "per-token-asym", Map.of(), Map.of(), layers, groups, Map.of());
    }

    private static double layerKl(int layer, LayerBits b) {
        return (1 + layer) * (Math.pow(2, -b.keyBits()) * 3 + Math.pow(2, -b.valueBits()));
    }

    /** Scores like a model would (deterministically), counting how often each configuration is scored. */
    private static final class Synthetic implements Scorer {
        private final Map<String, AtomicInteger> calls;

        Synthetic(Map<String, AtomicInteger> calls) {
            this.calls = calls;
        }

        @Override
        public double score(KvQuantConfig config) {
            Map<Integer, LayerBits> layers = config.perLayerConfig();
            calls.computeIfAbsent(layers.toString(), k -> new AtomicInteger()).incrementAndGet();
            double sum = 0;
            for (var e : layers.entrySet()) {
                sum += layerKl(e.getKey(), e.getValue());
            }
            sum += 0.5 * layerKl(0, layers.get(0)) * layerKl(1, layers.get(1));
            try {
                Thread.sleep(1 + Math.floorMod(layers.hashCode(), 2));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return sum;
        }

        @Override
        public void close() {
        }
    }

    private static Tuner.Result search(Tuner.Options options, Map<String, AtomicInteger> calls) {
        return Tuner.run(profile(), SHAPE, BASE, () -> new Synthetic(calls), options, Progress.none());
    }

    @Test
    void twoConcurrentSearchesWithOneSeedGiveTheResultOfOneAlone() throws Exception {
        Map<String, AtomicInteger> aloneCalls = new ConcurrentHashMap<>();
        Tuner.Result alone = search(OPTIONS, aloneCalls);
        assertEquals(OPTIONS.trials(), alone.modelEvaluations(), "the budget is spent on distinct configurations");
        assertTrue(aloneCalls.values().stream().allMatch(c -> c.get() == 1), "a configuration was scored twice");

        ExecutorService two = Executors.newFixedThreadPool(2);
        try {
            List<Map<String, AtomicInteger>> calls = List.of(new ConcurrentHashMap<>(), new ConcurrentHashMap<>());
            List<Future<Tuner.Result>> runs = new ArrayList<>();
            for (Map<String, AtomicInteger> c : calls) {
                runs.add(two.submit(() -> search(OPTIONS, c)));
            }
            for (int i = 0; i < 2; i++) {
                Tuner.Result r = runs.get(i).get();
                assertEquals(alone.evaluated(), r.evaluated(), "search " + i + " beside another");
                assertEquals(alone.front(), r.front(), "search " + i + " beside another");
                assertEquals(aloneCalls.keySet(), calls.get(i).keySet());
                assertTrue(calls.get(i).values().stream().allMatch(c -> c.get() == 1));
            }
        } finally {
            two.shutdownNow();
        }

        Tuner.Result otherSeed = search(new Tuner.Options(3.5, 60, 8, 2), new ConcurrentHashMap<>());
        assertNotEquals(alone.evaluated(), otherSeed.evaluated(), "the seed decides what the search proposes");
    }

    @Test
    void aSearchLeavesTheCallersGeneratorAsItWas() {
        PRNG.setSeed(99);
        double first = PRNG.nextDouble();
        PRNG.setSeed(99);
        search(OPTIONS, new ConcurrentHashMap<>());
        assertEquals(first, PRNG.nextDouble());
    }
}
