package dev.kvq.tuner;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class AdditiveKlTest {
    /** A profile of {@code layers} layers whose KL per pair is random but falls with bits, as measured ones do. */
    private static Profile profile(int layers, long seed, boolean withKl) {
        SplittableRandom random = new SplittableRandom(seed);
        List<Profile.LayerProfile> out = new ArrayList<>();
        for (int l = 0; l < layers; l++) {
            double scale = 0.5 + random.nextDouble() * 4;
            Map<String, Profile.Errors> errors = new LinkedHashMap<>();
            for (Pair p : Pair.KVTUNER) {
                double kl = scale * (Math.pow(2, -p.keyBits()) * (1 + random.nextDouble())
                        + Math.pow(2, -p.valueBits()) * random.nextDouble());
                errors.put(p.name(), new Profile.Errors(kl, kl, kl, withKl ? kl : null));
            }
            out.add(new Profile.LayerProfile(l, errors, List.copyOf(errors.keySet())));
        }
        Profile bare = new Profile("m", "per-token-asym", Map.of(), Map.of(), out, List.of(), Map.of());
        return new Profile("m", "per-token-asym", Map.of(), Map.of(), out, AdditiveKl.unpruned(bare), Map.of());
    }

    /** Brute force over every choice: the lowest summed KL at each average-bit value. */
    private static Map<Double, Double> bruteForce(Profile profile, List<Profile.Group> groups) {
        Map<Double, Double> best = new java.util.TreeMap<>();
        for (int[] choice : GroupedChoices.all(groups)) {
            AdditiveKl.Estimate e = AdditiveKl.estimate(profile, groups, choice);
            best.merge(e.avgBits(), e.kl(), Math::min);
        }
        return best;
    }

    @Test
    void theKnapsackFindsTheLowestEstimateAtEveryBudget() {
        for (long seed = 1; seed <= 5; seed++) {
            Profile profile = profile(4, seed, true);
            List<Profile.Group> groups = profile.groups();
            Map<Double, Double> exact = bruteForce(profile, groups);
            List<AdditiveKl.Estimate> front = AdditiveKl.front(profile, groups);
            for (double budget = 2.0; budget <= 8.0; budget += 0.25) {
                double b = budget;
                double expected = exact.entrySet().stream().filter(x -> x.getKey() <= b + 1e-9)
                        .mapToDouble(Map.Entry::getValue).min().orElseThrow();
                assertEquals(expected, AdditiveKl.best(front, budget).kl(), 1e-12, "seed " + seed + " budget " + b);
                assertTrue(AdditiveKl.best(front, budget).avgBits() <= budget + 1e-9);
            }
            for (int i = 1; i < front.size(); i++) {
                assertTrue(front.get(i).avgBits() > front.get(i - 1).avgBits());
                assertTrue(front.get(i).kl() < front.get(i - 1).kl(), "the front's estimate falls as bits rise");
            }
            AdditiveKl.Estimate cheapest = front.getFirst();
            assertEquals(2.0, cheapest.avgBits());
            assertEquals(List.of("KV2", "KV2", "KV2", "KV2"), cheapest.pairs());
        }
    }

    @Test
    void groupsShareOneChoiceAndWeighByTheirLayers() {
        Profile profile = profile(3, 7, true);
        List<String> pairs = Pair.KVTUNER.stream().map(Pair::name).toList();
        List<Profile.Group> groups = List.of(new Profile.Group(List.of(0, 2), pairs), new Profile.Group(List.of(1), pairs));
        int kv4 = pairs.indexOf("KV4");
        int kv8 = pairs.indexOf("KV8");
        AdditiveKl.Estimate e = AdditiveKl.estimate(profile, groups, new int[] {kv8, kv4});
        assertEquals((8 * 2 + 4) / 3.0, e.avgBits(), 1e-12);
        double kl = profile.layers().get(0).errors().get("KV8").kl() + profile.layers().get(2).errors().get("KV8").kl()
                + profile.layers().get(1).errors().get("KV4").kl();
        assertEquals(kl, e.kl(), 1e-15);
        Map<Double, Double> exact = bruteForce(profile, groups);
        for (AdditiveKl.Estimate f : AdditiveKl.front(profile, groups)) {
            assertEquals(exact.get(f.avgBits()), f.kl(), 1e-12);
        }
    }

    @Test
    void seedsAreTheUniformConfigurationsThenTheEstimatesWithinTheBudget() {
        Profile profile = profile(4, 3, true);
        List<int[]> seeds = Tuner.seeds(profile, profile.groups(), 3.5, 1000);
        List<int[]> uniform = Tuner.uniformChoices(profile.groups());
        for (int i = 0; i < uniform.size(); i++) {
            assertArrayEquals(uniform.get(i), seeds.get(i));
        }
        assertTrue(seeds.size() > uniform.size(), "the estimate adds mixed configurations");
        for (int[] seed : seeds.subList(uniform.size(), seeds.size())) {
            assertTrue(AdditiveKl.estimate(profile, profile.groups(), seed).avgBits() <= 3.5 + 1e-9);
        }
        int[] best = AdditiveKl.best(AdditiveKl.front(profile, profile.groups()), 3.5).choice();
        assertTrue(seeds.stream().anyMatch(s -> java.util.Arrays.equals(s, best)));
        // a small trial budget keeps the uniform configurations and the estimates nearest the budget
        List<int[]> few = Tuner.seeds(profile, profile.groups(), 3.5, uniform.size() + 1);
        assertEquals(uniform.size() + 1, few.size());
        assertArrayEquals(best, few.getLast());
    }

    @Test
    void withoutKlThereIsNoEstimateAndOnlyUniformSeeds() {
        Profile profile = profile(3, 2, false);
        assertFalse(AdditiveKl.available(profile, profile.groups()));
        assertTrue(AdditiveKl.front(profile, profile.groups()).isEmpty());
        assertEquals(Tuner.uniformChoices(profile.groups()).size(), Tuner.seeds(profile, profile.groups(), 4, 1000).size());
    }
}
