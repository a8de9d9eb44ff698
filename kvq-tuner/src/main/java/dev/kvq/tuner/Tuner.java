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
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.function.Supplier;
import org.moeaframework.algorithm.NSGAII;
import org.moeaframework.core.Problem;
import org.moeaframework.core.Solution;
import org.moeaframework.core.initialization.InjectedInitialization;
import org.moeaframework.core.variable.EncodingUtils;
import org.moeaframework.parallel.DistributedProblem;
import org.moeaframework.problem.AbstractProblem;
import org.moeaframework.problem.ProblemWrapper;

/**
 * The multi-objective search over the grouped space of a profile: each group of layers picks one of its candidate
 * pairs; objectives are the average KV bits (minimize) and the evaluator's score (minimize), under the budget
 * {@code avg bits <= maxAvgBits} as a constraint. NSGA-II (MOEA Framework) runs the search; when the whole space is no
 * larger than the trial budget every point is evaluated instead. The first generation holds the uniform configurations
 * and the profile's additive-KL estimates ({@link AdditiveKl}). Evaluations are memoized and run in parallel, one
 * scorer per thread, outside any lock. A search's random numbers are its own ({@link SearchRandom}), and the budget
 * goes to proposals in the order NSGA-II makes them, so a seed gives one result, alone or beside other searches.
 */
public final class Tuner {
    private Tuner() {
    }

    /**
     * @param maxAvgBits budget on the average KV bits
     * @param trials evaluations at most
     * @param seed NSGA-II's random seed (the search's own generator)
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

    public static Result run(Profile profile, ModelShape shape, KvQuantConfig base,
                             Supplier<? extends Scorer> scorers, Options o, Progress progress) {
        List<Profile.Group> groups = profile.groups();
        long space = 1;
        for (Profile.Group g : groups) {
            if (g.candidates().isEmpty()) {
                throw KvqException.config("profile group " + g.layers() + " has no candidates");
            }
            space = Math.multiplyExact(space, g.candidates().size());
        }
        boolean exhaustive = space <= o.trials();
        ExecutorService pool = Executors.newFixedThreadPool(Math.max(1, o.threads()));
        Search search = new Search(groups, shape, base, o, scorers, exhaustive ? -1 : o.trials());
        try (Progress.Task task = progress.start("tune", exhaustive ? space : o.trials())) {
            search.task = task;
            if (exhaustive) {
                List<Future<Point>> futures = new ArrayList<>();
                for (long index = 0; index < space; index++) {
                    Claim claim = search.claim(decode(index, groups));
                    futures.add(pool.submit(() -> {
                        Point p = claim.resolve();
                        if (!claim.computes()) {
                            task.step(1);
                        }
                        return p;
                    }));
                }
                for (Future<Point> f : futures) {
                    f.get();
                }
            } else {
                SearchRandom.withSeed(o.seed(), () -> {
                    nsga(profile, groups, o, search, pool);
                    return null;
                });
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new KvqException(dev.kvq.ErrorCode.RUNTIME_FAILURE, "the search was interrupted", e);
        } catch (java.util.concurrent.ExecutionException | RuntimeException e) {
            throw failure(e);
        } finally {
            pool.shutdownNow();
            if (ended(pool)) {
                search.closeScorers();
            }
        }
        List<Point> all = search.points();
        return new Result(all, front(all), exhaustive, space);
    }

    /**
     * Waits for evaluations still running (after a failure) to end; false when one does not, and then its scorer is
     * left open rather than closed under it.
     */
    private static boolean ended(ExecutorService pool) {
        try {
            return pool.awaitTermination(10, java.util.concurrent.TimeUnit.MINUTES);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    /** The kvq error behind a failed evaluation (wrapped by the pool, the futures or MOEA Framework), else a new one. */
    private static KvqException failure(Throwable e) {
        for (Throwable c = e; c != null; c = c.getCause()) {
            if (c instanceof KvqException k) {
                return k;
            }
        }
        Throwable cause = e instanceof java.util.concurrent.ExecutionException && e.getCause() != null ? e.getCause() : e;
        return new KvqException(dev.kvq.ErrorCode.RUNTIME_FAILURE, "an evaluation failed: " + cause, cause);
    }

    /**
     * NSGA-II over the grouped space until the evaluation budget is spent. Proposals are claimed on this thread, in
     * the order NSGA-II makes them (so which of them the budget covers never depends on thread timing), and evaluated
     * on the pool.
     */
    private static void nsga(Profile profile, List<Profile.Group> groups, Options o, Search search,
                             ExecutorService pool) {
        Map<Solution, Claim> claims = java.util.Collections.synchronizedMap(new java.util.IdentityHashMap<>());
        AbstractProblem problem = new AbstractProblem(groups.size(), 2, 1) {
            @Override
            public void evaluate(Solution s) {
                Point p = claims.remove(s).resolve();
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
            Problem claiming = new ProblemWrapper(parallel) {
                @Override
                public void evaluate(Solution s) {
                    claims.put(s, search.claim(EncodingUtils.getInt(s)));
                    parallel.evaluate(s);
                }
            };
            NSGAII nsga = new NSGAII(claiming);
            List<Solution> injected = new ArrayList<>();
            int population = Math.max(8, Math.min(o.trials() / 4, 40));
            for (int[] choice : seeds(profile, groups, o.maxAvgBits(), population)) {
                Solution s = claiming.newSolution();
                for (int i = 0; i < choice.length; i++) {
                    EncodingUtils.setInt(s.getVariable(i), choice[i]);
                }
                injected.add(s);
            }
            nsga.setInitialPopulationSize(Math.max(population, injected.size()));
            nsga.setInitialization(new InjectedInitialization(claiming, injected));
            // stop when the budget is spent, or when the search keeps proposing known points (a space with fewer
            // feasible configurations than the budget)
            long proposals = 50L * o.trials();
            while (search.budgetLeft() > 0 && nsga.getNumberOfEvaluations() < proposals) {
                nsga.step();
            }
        }
    }

    /**
     * One search's state. Configurations are claimed on the search's thread: a known one waits for its point, a new
     * feasible one takes one evaluation of the budget and is run by whichever pool thread resolves the claim, with a
     * scorer of its own. No lock is held while a model runs.
     */
    private static final class Search {
        private final List<Profile.Group> groups;
        private final ModelShape shape;
        private final KvQuantConfig base;
        private final Options options;
        private final Supplier<? extends Scorer> scorers;
        private final Map<String, CompletableFuture<Point>> points = new ConcurrentHashMap<>();
        private final java.util.concurrent.BlockingQueue<Scorer> idle = new java.util.concurrent.LinkedBlockingQueue<>();
        private final List<Scorer> opened = new java.util.concurrent.CopyOnWriteArrayList<>();
        /** Evaluations still allowed, or -1 for no limit; touched by the search's thread only. */
        private int budget;
        private Progress.Task task;

        Search(List<Profile.Group> groups, ModelShape shape, KvQuantConfig base, Options options,
               Supplier<? extends Scorer> scorers, int budget) {
            this.groups = groups;
            this.shape = shape;
            this.base = base;
            this.options = options;
            this.scorers = scorers;
            this.budget = budget;
        }

        int budgetLeft() {
            return budget;
        }

        /**
         * What {@code choice} will be: its known point, an unscored point (over the bit budget, never run; or beyond
         * the evaluation budget, and then not remembered, as it was never measured), or a new evaluation.
         */
        Claim claim(int[] choice) {
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
            CompletableFuture<Point> known = points.get(key);
            if (known != null) {
                return new Claim(this, known, null, null);
            }
            KvQuantConfig config = config(base, layers);
            PrecisionPlan plan = PrecisionPlan.resolve(config, shape);
            Point unscored = new Point(List.copyOf(names), layers, plan.averageBits(), plan.averageKeyBits(),
                    plan.averageValueBits(), Double.MAX_VALUE, false);
            if (unscored.avgBits() > options.maxAvgBits() + BITS_TOLERANCE) {
                CompletableFuture<Point> done = CompletableFuture.completedFuture(unscored);
                points.put(key, done);
                return new Claim(this, done, null, null);
            }
            if (budget == 0) {
                return new Claim(this, CompletableFuture.completedFuture(unscored), null, null);
            }
            if (budget > 0) {
                budget--;
            }
            CompletableFuture<Point> pending = new CompletableFuture<>();
            points.put(key, pending);
            return new Claim(this, pending, config, unscored);
        }

        /** Runs the model for a claimed configuration on the calling (pool) thread. */
        Point evaluate(KvQuantConfig config, Point unscored, CompletableFuture<Point> into) {
            Scorer scorer = idle.poll();
            if (scorer == null) {
                // at most one scorer per pool thread: a thread takes one only while it evaluates
                scorer = scorers.get();
                opened.add(scorer);
            }
            try {
                double score = scorer.score(config);
                Point p = new Point(unscored.groupChoice(), unscored.layers(), unscored.avgBits(),
                        unscored.avgKeyBits(), unscored.avgValueBits(), score, true);
                into.complete(p);
                if (task != null) {
                    task.step(1);
                }
                return p;
            } catch (RuntimeException | Error e) {
                into.completeExceptionally(e);
                throw e;
            } finally {
                idle.add(scorer);
            }
        }

        /** Every remembered point, by bits, then score, then choice, so equal searches list them alike. */
        List<Point> points() {
            List<Point> all = new ArrayList<>();
            for (CompletableFuture<Point> f : points.values()) {
                if (f.isDone() && !f.isCompletedExceptionally()) {
                    all.add(f.join());
                }
            }
            all.sort(Comparator.comparingDouble(Point::avgBits).thenComparingDouble(Point::score)
                    .thenComparing(p -> String.join(",", p.groupChoice())));
            return all;
        }

        void closeScorers() {
            opened.forEach(Scorer::close);
        }

    }

    /**
     * What a proposal resolves to: a point known or on its way, or, for the one claim that took the evaluation, the
     * configuration to run.
     */
    private record Claim(Search search, CompletableFuture<Point> point, KvQuantConfig config, Point unscored) {
        boolean computes() {
            return config != null;
        }

        Point resolve() {
            return computes() ? search.evaluate(config, unscored, point) : point.join();
        }
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
