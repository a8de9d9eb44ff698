package dev.kvq.tuner;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.LayerBits;
import dev.kvq.config.ModelShape;
import dev.kvq.eval.Progress;
import dev.kvq.io.config.ConfigFiles;
import java.io.UncheckedIOException;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;

/**
 * A whole tuning run as {@code kvq tune} does it: the search over a profile's space, then full precision and every
 * KVTuner uniform pair scored on the same calibration data, so the front can be judged against them.
 * {@link TuneArtifacts} writes what it found.
 */
public final class Tuning {
    private static final ObjectMapper JSON = new ObjectMapper();

    private Tuning() {
    }

    /**
     * @param search the search's budget, seed and threads
     * @param budgets budgets whose best configuration is reported and written (empty: the search's bit budget)
     * @param baselines also score the uniform pairs the search did not
     */
    public record Request(Evaluator.Objective objective, Tuner.Options search, List<Double> budgets,
                          boolean baselines) {
        public Request {
            budgets = budgets.isEmpty() ? List.of(search.maxAvgBits()) : List.copyOf(budgets);
        }
    }

    /**
     * What a run found.
     *
     * @param scheme the calibrated scheme every point applies its bits to
     * @param fullPrecision the objective's metric with the full-precision cache
     * @param uniform the metric of each KVTuner uniform pair ("KV8", "K4V2", ...), empty without baselines
     */
    public record Outcome(String model, KvQuantConfig scheme, Request request, Tuner.Result search,
                          double fullPrecision, Map<String, Double> uniform) {
        /** The metric of a point as reported (an accuracy, not its negation). */
        public double metric(Tuner.Point p) {
            return request.objective().accuracy() ? -p.score() : p.score();
        }

        /** The objective's name as files and tables spell it ({@code ppl}, {@code kl}, ...). */
        public String objectiveName() {
            return request.objective().name().toLowerCase(java.util.Locale.ROOT);
        }
    }

    /** The configuration a profile was calibrated under, which tuned bits apply to. */
    public static KvQuantConfig scheme(Profile profile) {
        try {
            return ConfigFiles.parse(JSON.writeValueAsString(profile.config()));
        } catch (JsonProcessingException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * Runs the search with one evaluator per search thread, then scores full precision and (with
     * {@link Request#baselines}) the uniform pairs the search did not score, on one more evaluator.
     */
    public static Outcome run(String model, Profile profile, ModelShape shape, Request request,
                              Supplier<Evaluator> searchEvaluators, Supplier<Evaluator> baselineEvaluator,
                              Progress progress) {
        KvQuantConfig scheme = scheme(profile);
        Tuner.Result result = Tuner.run(profile, shape, scheme, searchEvaluators, request.search(), progress);
        boolean accuracy = request.objective().accuracy();
        Map<String, Double> uniform = new LinkedHashMap<>();
        double fp;
        try (Evaluator e = baselineEvaluator.get()) {
            fp = e.metric(null);
            if (request.baselines()) {
                for (Pair pair : Pair.KVTUNER) {
                    // the search already scored the uniform configurations its space holds within the budget
                    LayerBits bits = pair.bits();
                    Double known = result.evaluated().stream().filter(pt -> pt.feasible()
                            && pt.layers().values().stream().allMatch(bits::equals)).findFirst()
                            .map(pt -> accuracy ? -pt.score() : pt.score()).orElse(null);
                    uniform.put(pair.name(), known != null ? known
                            : e.metric(scheme.toBuilder().bits(pair.keyBits(), pair.valueBits()).build()));
                }
            }
        }
        return new Outcome(model, scheme, request, result, fp, uniform);
    }
}
