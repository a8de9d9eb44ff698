package dev.kvq.tuner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.config.CachePolicy;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.PrecisionPlan;
import dev.kvq.eval.Progress;
import dev.kvq.eval.TextWindows;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.spi.RuntimeOptions;
import dev.kvq.io.config.ConfigFiles;
import dev.kvq.testkit.Repo;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A reduced calibration and search on the demo model, as CI can afford: a few minutes at most. */
class CalibrateAndTuneTest {
    private static ModelDir dir;
    private static String text;
    private static Profile profile;

    @BeforeAll
    static void calibrate() throws Exception {
        dir = ModelDir.open(Repo.demoModel());
        text = Files.readString(Repo.demoText());
        Calibration.Options o = new Calibration.Options("per-token-asym", "vanilla", CachePolicy.APPEND, 128, 2, 1, 16, 4,
                Pair.KVTUNER);
        try (Decoder d = Runtimes.discover().get("onnx").open(dir, "cpu"); Tokenizer t = Tokenizers.load(dir)) {
            profile = Calibration.run(dir, d, t, text, 0, 6000, o, Progress.none());
        }
    }

    @Test
    void profileMeasuresEveryLayerAndPairAndPrunes() {
        assertEquals(dir.config().layers(), profile.layers().size());
        for (Profile.LayerProfile l : profile.layers()) {
            assertEquals(9, l.errors().size());
            Profile.Errors kv8 = l.errors().get("KV8");
            Profile.Errors kv2 = l.errors().get("KV2");
            assertTrue(kv8.attention() < kv2.attention(), "layer " + l.layer());
            assertTrue(kv8.kl() < kv2.kl(), "layer " + l.layer());
            assertTrue(l.pareto().contains("KV8") && l.pareto().contains("KV2"), "the cheapest and the best always stay");
            assertTrue(l.pareto().size() < 9);
        }
        assertEquals(4, profile.groups().size());
        assertTrue(profile.keysVersusValues().containsKey("keys_matter_more_by_kl"));
    }

    @Test
    void profileRoundTripsThroughJson(@TempDir Path tmp) {
        Path f = tmp.resolve("p.json");
        profile.write(f);
        Profile back = Profile.read(f);
        assertEquals(profile.groups(), back.groups());
        assertEquals(profile.layers().get(1).errors().get("K4V2"), back.layers().get(1).errors().get("K4V2"));
    }

    private Tuner.Result tune(int trials, double budget) {
        KvQuantConfig base = ConfigFiles.parse(dev.kvq.io.config.ConfigFiles.toJson(
                Schemes.base("per-token-asym", "vanilla", dir.config().headDim(), CachePolicy.APPEND).build()));
        List<int[]> windows;
        try (Tokenizer t = Tokenizers.load(dir)) {
            windows = TextWindows.of(t, text, 6000, 6000, 96).subList(0, 2);
        }
        Evaluator.Data data = new Evaluator.Data(windows, 16, null, null, null);
        return Tuner.run(profile, dir.config().shape(), base, () -> new Evaluator(dir, "onnx",
                new RuntimeOptions("cpu", 1), Evaluator.Objective.PPL, data), new Tuner.Options(budget, trials, 7, 2),
                Progress.none());
    }

    @Test
    void searchesWithNsgaIiUnderTheBudget(@TempDir Path tmp) {
        Tuner.Result r = tune(24, 3.5);
        assertFalse(r.exhaustive(), "space " + r.spaceSize() + " exceeds 24 trials");
        // the budget counts model evaluations, however often NSGA-II proposes a known point
        assertTrue(r.modelEvaluations() <= 24, r.modelEvaluations() + " evaluations");
        // this profile holds far more configurations within 3.5 bits than the budget, so all of it is spent
        long feasible = feasibleConfigurations(3.5);
        assertTrue(feasible >= 100, feasible + " feasible configurations");
        assertEquals(24, r.modelEvaluations(), "the whole budget is spent on distinct configurations");
        assertFalse(r.front().isEmpty());
        for (Tuner.Point p : r.front()) {
            assertTrue(p.feasible() && p.avgBits() <= 3.5);
            for (Tuner.Point q : r.front()) {
                assertFalse(q != p && q.avgBits() <= p.avgBits() && q.score() < p.score(), "front is non-dominated");
            }
        }
        Tuner.Point best = r.best(3.5);
        assertNotNull(best);
        // the uniform configurations seed the search: each is evaluated, and none within the budget beats the best
        List<int[]> uniform = Tuner.uniformChoices(profile.groups());
        int withinBudget = 0;
        for (int[] choice : uniform) {
            String pair = profile.groups().getFirst().candidates().get(choice[0]);
            Tuner.Point u = r.evaluated().stream().filter(p -> p.groupChoice().stream().allMatch(pair::equals))
                    .findFirst().orElseThrow(() -> new AssertionError("uniform " + pair + " not evaluated"));
            assertEquals(Pair.parse(pair).averageBits() <= 3.5, u.feasible(), pair);
            if (u.feasible()) {
                withinBudget++;
                assertTrue(best.score() <= u.score(), "best " + best.score() + " vs uniform " + pair);
            }
        }
        assertTrue(withinBudget >= 1, "no uniform configuration within 3.5 bits was a candidate");
        // so do the additive estimate's best mixes within the budget
        AdditiveKl.Estimate estimated = AdditiveKl.best(AdditiveKl.front(profile, profile.groups()), 3.5);
        assertTrue(r.evaluated().stream().anyMatch(p -> p.groupChoice().equals(estimated.pairs())),
                "estimate " + estimated.pairs() + " evaluated");
        Path yaml = tmp.resolve("best.yaml");
        ConfigFiles.writePerLayer(yaml, best.layers());
        KvQuantConfig loaded = ConfigFiles.load(yaml);
        assertEquals(best.avgBits(), PrecisionPlan.resolve(loaded, dir.config().shape()).averageBits(), 1e-9);
    }

    /** Configurations of the grouped space within {@code budget} average bits. */
    private static long feasibleConfigurations(double budget) {
        return GroupedChoices.all(profile.groups()).stream()
                .filter(c -> AdditiveKl.estimate(profile, profile.groups(), c).avgBits() <= budget + 1e-9).count();
    }

    @Test
    void exhaustiveSearchFindsNothingWorseThanAUniformCandidate() {
        Tuner.Result r = tune(100_000, 4.0);
        assertTrue(r.exhaustive());
        assertEquals(r.spaceSize(), r.evaluated().size());
        Tuner.Point best = r.best(4.0);
        // every configuration was scored, so the best is no worse than any uniform one within the budget
        List<Tuner.Point> uniform = r.evaluated().stream().filter(p -> p.feasible()
                && p.groupChoice().stream().distinct().count() == 1).toList();
        assertFalse(uniform.isEmpty(), "no uniform configuration within 4 bits");
        for (Tuner.Point u : uniform) {
            assertTrue(best.score() <= u.score(), "best " + best.score() + " vs uniform " + u.groupChoice());
        }
        assertEquals(r.evaluated().stream().filter(Tuner.Point::feasible).mapToDouble(Tuner.Point::score).min()
                .orElseThrow(), best.score());
        assertTrue(best.avgBits() <= 4.0);
    }
}
