package dev.kvq.tuner;

import dev.kvq.KvqException;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.LayerBits;
import dev.kvq.config.ModelShape;
import dev.kvq.config.PrecisionPlan;
import dev.kvq.eval.Progress;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;
import org.moeaframework.algorithm.NSGAII;
import org.moeaframework.core.PRNG;
import org.moeaframework.core.Solution;
import org.moeaframework.core.initialization.InjectedInitialization;
import org.moeaframework.core.variable.EncodingUtils;
import org.moeaframework.parallel.DistributedProblem;
import org.moeaframework.problem.AbstractProblem;

/**
 * The multi-objective search over the grouped space of a profile: each group of layers picks one of its candidate
 * pairs; objectives are the average KV bits (minimize) and the evaluator's score (minimize), under the budget
 * {@code avg bits <= maxAvgBits} as a constraint. NSGA-II (MOEA Framework) runs the search; when the whole space is no
 * larger than the trial budget every point is evaluated instead. The first generation holds the uniform configurations
 * and the profile's additive-KL estimates ({@link AdditiveKl}). Evaluations are memoized and run in parallel, one
 * evaluator per thread.
 */
public final class Tuner {
    private Tuner() {
    }

    /**
     * @param maxAvgBits budget on the average KV bits
     * @param trials evaluations at most
     * @param seed NSGA-II's random seed
     * @param threads evaluations run at once
     */
    public record Options(double maxAvgBits, int trials, long seed, int threads) {
    }

    /** Average bits closer than this are equal: the same total reached through different sums differs in the last bit. */
    static final double BITS_TOLERANCE = 1e-9;

    /** One evaluated configuration. */
    public record Point(List<String> groupChoice, Map<Integer, LayerBits> layers, double avgBits, double avgKeyBits,
                        double avgValueBits, double score, boolean feasible) {
    }

    /** Everything the search evaluated, the Pareto front of the feasible points, and how it searched. */
    public record Result(List<Point> evaluated, List<Point> front, boolean exhaustive, long spaceSize) {
        /** How many points ran the model: the feasible ones (an over-budget point is scored without it). */
        public long modelEvaluations() {
            return evaluated.stream().filter(Point::feasible).count();
        }

        /** The best feasible point within {@code budget} bits (lowest score, then fewest bits), or null. */
        public Point best(double budget) {
            return evaluated.stream().filter(p -> p.avgBits() <= budget + BITS_TOLERANCE)
                    .min(Comparator.comparingDouble(Point::score).thenComparingDouble(Point::avgBits)).orElse(null);
        }
    }

    public static Result run(Profile profile, ModelShape shape, KvQuantConfig base, Supplier<Evaluator> evaluators,
                             Options o, Progress progress) {
        List<Profile.Group> groups = profile.groups();
        long space = 1;
        for (Profile.Group g : groups) {
            if (g.candidates().isEmpty()) {
                throw KvqException.config("profile group " + g.layers() + " has no candidates");
            }
            space = Math.multiplyExact(space, g.candidates().size());
        }
        Map<String, Point> memo = new ConcurrentHashMap<>();
        ThreadLocal<Evaluator> local = ThreadLocal.withInitial(evaluators);
        List<Evaluator> opened = java.util.Collections.synchronizedList(new ArrayList<>());
        Supplier<Evaluator> evaluator = () -> {
            Evaluator e = local.get();
            if (!opened.contains(e)) {
                opened.add(e);
            }
            return e;
        };
        boolean exhaustive = space <= o.trials();
        ExecutorService pool = Executors.newFixedThreadPool(Math.max(1, o.threads()));
        try (Progress.Task task = progress.start("tune", exhaustive ? space : o.trials())) {
            if (exhaustive) {
                List<Future<?>> futures = new ArrayList<>();
                for (long index = 0; index < space; index++) {
                    int[] choice = decode(index, groups);
                    futures.add(pool.submit(() -> {
                        evaluate(choice, groups, shape, base, o, evaluator, memo, null, () -> { });
                        task.step(1);
                    }));
                }
                for (Future<?> f : futures) {
                    f.get();
                }
            } else {
                PRNG.setSeed(o.seed());
                // the budget counts distinct model evaluations: NSGA-II proposes the same configuration many times
                // in a small space, and a memoized repeat costs nothing
                AtomicInteger left = new AtomicInteger(o.trials());
                AbstractProblem problem = new AbstractProblem(groups.size(), 2, 1) {
                    @Override
                    public void evaluate(Solution s) {
                        int[] choice = EncodingUtils.getInt(s);
                        Point p = Tuner.evaluate(choice, groups, shape, base, o, evaluator, memo, left,
                                () -> task.step(1));
                        s.setObjective(0, p.avgBits());
                        s.setObjective(1, p.score());
                        s.setConstraint(0, p.feasible() ? 0 : Math.max(BITS_TOLERANCE, p.avgBits() - o.maxAvgBits()));
                    }

                    @Override
                    public Solution newSolution() {
                        Solution s = new Solution(groups.size(), 2, 1);
                        for (int i = 0; i < groups.size(); i++) {
                            s.setVariable(i, EncodingUtils.newInt(0, groups.get(i).candidates().size() - 1));
                        }
                        return s;
                    }
                };
                try (DistributedProblem parallel = new DistributedProblem(problem, pool, false)) {
                    NSGAII nsga = new NSGAII(parallel);
                    List<Solution> injected = new ArrayList<>();
                    int population = Math.max(8, Math.min(o.trials() / 4, 40));
                    for (int[] choice : seeds(profile, groups, o.maxAvgBits(), population)) {
                        Solution s = parallel.newSolution();
                        for (int i = 0; i < choice.length; i++) {
                            EncodingUtils.setInt(s.getVariable(i), choice[i]);
                        }
                        injected.add(s);
                    }
                    nsga.setInitialPopulationSize(Math.max(population, injected.size()));
                    nsga.setInitialization(new InjectedInitialization(parallel, injected));
                    // stop when the budget is spent, or when the search keeps proposing known points (a space with
                    // fewer feasible configurations than the budget)
                    long proposals = 50L * o.trials();
                    while (left.get() > 0 && nsga.getNumberOfEvaluations() < proposals) {
                        nsga.step();
                    }
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new KvqException(dev.kvq.ErrorCode.RUNTIME_FAILURE, "the search was interrupted", e);
        } catch (java.util.concurrent.ExecutionException e) {
            Throwable c = e.getCause();
            throw c instanceof KvqException k ? k : new KvqException(dev.kvq.ErrorCode.RUNTIME_FAILURE,
                    "an evaluation failed: " + c, c);
        } finally {
            pool.shutdownNow();
            opened.forEach(Evaluator::close);
        }
        List<Point> all = new ArrayList<>(memo.values());
        all.sort(Comparator.comparingDouble(Point::avgBits).thenComparingDouble(Point::score));
        return new Result(all, front(all), exhaustive, space);
    }

    /**
     * The first generation's injected members: every uniform configuration the pruned space holds, so the front is
     * never worse than the best of them, then the additive KL estimate's best configuration at each bit total within
     * the budget (when the profile has KL), so the search starts from the mixes the profile predicts rather than
     * having to find them among thousands by chance. Estimates are added while there are fewer than {@code limit}
     * (the population size, so seeding does not stretch a generation), nearest the budget first, as the budget is
     * where the search's answer lies.
     */
    static List<int[]> seeds(Profile profile, List<Profile.Group> groups, double maxAvgBits, int limit) {
        List<int[]> out = new ArrayList<>(uniformChoices(groups));
        List<AdditiveKl.Estimate> front = AdditiveKl.front(profile, groups);
        for (AdditiveKl.Estimate e : front.reversed()) {
            boolean known = out.stream().anyMatch(c -> java.util.Arrays.equals(c, e.choice()));
            if (e.avgBits() <= maxAvgBits + BITS_TOLERANCE && !known && out.size() < limit) {
                out.add(e.choice());
            }
        }
        return out;
    }

    /** The choices that give every group the same pair, for each pair that all groups hold. */
    static List<int[]> uniformChoices(List<Profile.Group> groups) {
        List<int[]> out = new ArrayList<>();
        for (String pair : groups.getFirst().candidates()) {
            int[] choice = new int[groups.size()];
            boolean everywhere = true;
            for (int i = 0; i < groups.size() && everywhere; i++) {
                choice[i] = groups.get(i).candidates().indexOf(pair);
                everywhere = choice[i] >= 0;
            }
            if (everywhere) {
                out.add(choice);
            }
        }
        return out;
    }

    private static int[] decode(long index, List<Profile.Group> groups) {
        int[] choice = new int[groups.size()];
        for (int i = groups.size() - 1; i >= 0; i--) {
            int n = groups.get(i).candidates().size();
            choice[i] = (int) (index % n);
            index /= n;
        }
        return choice;
    }

    /**
     * Scores one choice, memoized. With {@code left} (the evaluations still allowed), a new feasible point takes one;
     * once none is left it comes back unscored and infeasible, and is not remembered.
     */
    static Point evaluate(int[] choice, List<Profile.Group> groups, ModelShape shape, KvQuantConfig base, Options o,
                          Supplier<Evaluator> evaluator, Map<String, Point> memo, AtomicInteger left,
                          Runnable evaluated) {
        List<String> names = new ArrayList<>();
        Map<Integer, LayerBits> layers = new TreeMap<>();
        for (int i = 0; i < groups.size(); i++) {
            String pair = groups.get(i).candidates().get(choice[i]);
            names.add(pair);
            for (int layer : groups.get(i).layers()) {
                layers.put(layer, Pair.parse(pair).bits());
            }
        }
        String key = String.join(",", names);
        Point known = memo.get(key);
        if (known != null) {
            return known;
        }
        KvQuantConfig config = config(base, layers);
        PrecisionPlan plan = PrecisionPlan.resolve(config, shape);
        double bits = plan.averageBits();
        // an infeasible point is never deployed: it is scored without running the model, as is a point the
        // evaluation budget no longer covers (that one is not remembered: it was never measured)
        Point unscored = new Point(List.copyOf(names), layers, bits, plan.averageKeyBits(), plan.averageValueBits(),
                Double.MAX_VALUE, false);
        if (bits > o.maxAvgBits() + BITS_TOLERANCE) {
            return memo.computeIfAbsent(key, k -> unscored);
        }
        // computeIfAbsent: two threads proposing the same point run the model once and take one evaluation
        Point p = memo.computeIfAbsent(key, k -> {
            if (left != null && left.getAndDecrement() <= 0) {
                return null;
            }
            double score = evaluator.get().score(config);
            evaluated.run();
            return new Point(unscored.groupChoice(), layers, bits, unscored.avgKeyBits(), unscored.avgValueBits(), score,
                    true);
        });
        return p != null ? p : unscored;
    }

    /** {@code base} with per-layer bits. */
    public static KvQuantConfig config(KvQuantConfig base, Map<Integer, LayerBits> layers) {
        return base.toBuilder().perLayer(layers, null).build();
    }

    /** The feasible points no other feasible point beats on both bits and score, one per (bits, score). */
    static List<Point> front(List<Point> points) {
        List<Point> feasible = points.stream().filter(Point::feasible).toList();
        List<Point> out = new ArrayList<>();
        for (Point p : feasible) {
            boolean dominated = feasible.stream().anyMatch(q -> q != p && dominates(q, p));
            boolean repeated = out.stream().anyMatch(q -> Math.abs(q.avgBits() - p.avgBits()) <= BITS_TOLERANCE
                    && q.score() == p.score());
            if (!dominated && !repeated) {
                out.add(p);
            }
        }
        out.sort(Comparator.comparingDouble(Point::avgBits));
        return out;
    }

    private static boolean dominates(Point q, Point p) {
        boolean fewerOrSameBits = q.avgBits() <= p.avgBits() + BITS_TOLERANCE;
        boolean fewerBits = q.avgBits() < p.avgBits() - BITS_TOLERANCE;
        return fewerOrSameBits && q.score() <= p.score() && (fewerBits || q.score() < p.score());
    }
}
