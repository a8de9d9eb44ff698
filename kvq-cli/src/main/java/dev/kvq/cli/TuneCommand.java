package dev.kvq.cli;

import dev.kvq.KvqException;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.LayerBits;
import dev.kvq.eval.Gsm8k;
import dev.kvq.eval.Passkey;
import dev.kvq.eval.Progress;
import dev.kvq.eval.Report;
import dev.kvq.eval.TextWindows;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.RuntimeOptions;
import dev.kvq.io.config.ConfigFiles;
import dev.kvq.tuner.Evaluator;
import dev.kvq.tuner.Pair;
import dev.kvq.tuner.Profile;
import dev.kvq.tuner.Tuner;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Help.Visibility;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/** {@code kvq tune}: the multi-objective search for per-layer KV precision. */
@Command(name = "tune", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Search the pruned per-layer space of a calibration profile with NSGA-II (MOEA Framework), or "
            + "exhaustively when it is small: minimize average KV bits and the objective on calibration data, under "
            + "--max-avg-bits. Writes the Pareto front (JSON, PNG) and a KVTuner per-layer YAML for each of its points.",
            "An --out-dir that holds results of an earlier search is refused unless --force."})
final class TuneCommand implements Callable<Integer>, CheckedCommand {
    @Mixin
    ModelOptions model;

    @Option(names = "--profile", required = true, paramLabel = "profile.json",
            description = "Calibration profile of the same model (kvq calibrate --out).")
    Path profile;

    @Option(names = "--data", required = true, paramLabel = "FILE", description = "Calibration data: text for "
            + "ppl/kl, test.jsonl for passkey/gsm8k. Keep it apart from evaluation data.")
    Path data;

    @Option(names = "--offset", defaultValue = "0", paramLabel = "N", converter = Checks.NotNegative.class,
            description = "Text: first character; passkey: first prompt.")
    int offset;

    @Option(names = "--length", defaultValue = "20000", paramLabel = "N", converter = Checks.NotNegative.class,
            description = "Text: characters (0 = to the end).")
    int length;

    @Option(names = "--limit", defaultValue = "150", paramLabel = "N", converter = Checks.NotNegative.class,
            description = "passkey/gsm8k: prompts (0 = all).")
    int limit;

    @Option(names = "--train", paramLabel = "train.jsonl", description = "gsm8k: demonstrations (default: train.jsonl "
            + "beside --data).")
    Path train;

    @Option(names = "--shots", defaultValue = "4", paramLabel = "N", converter = Checks.NotNegative.class,
            description = "gsm8k: demonstrations before each problem.")
    int shots;

    @Option(names = "--window", defaultValue = "256", paramLabel = "W", converter = Checks.Window.class,
            description = "ppl/kl: tokens per window, at most the model's positions.")
    int window;

    @Option(names = "--windows", defaultValue = "8", paramLabel = "N", converter = Checks.Positive.class,
            description = "ppl/kl: text windows scored per candidate.")
    int windows;

    @Option(names = "--prefill", defaultValue = "32", paramLabel = "P", converter = Checks.Positive.class,
            description = "ppl/kl: prompt tokens per window, fewer than --window.")
    int prefill;

    @Option(names = "--max-avg-bits", required = true, paramLabel = "B", converter = Checks.AverageBits.class,
            showDefaultValue = Visibility.NEVER,
            description = "Budget of the search: average KV bits at most, from the fewest the profile's space holds "
                + "to 8.")
    double maxAvgBits;

    @Option(names = "--budgets", split = ",", paramLabel = "B,B,...", converter = Checks.AverageBits.class,
            showDefaultValue = Visibility.NEVER,
            description = "Also write the best config within each of these budgets, each at most --max-avg-bits "
                + "(default: --max-avg-bits).")
    List<Double> budgets = new ArrayList<>();

    @Option(names = "--objective", defaultValue = "ppl", paramLabel = "ppl|kl|passkey|gsm8k",
            description = "What the search minimizes beside the bits: perplexity or KL on text, or maximizes: passkey or "
                + "GSM8K accuracy on test.jsonl.")
    String objective;

    @Option(names = "--trials", defaultValue = "200", paramLabel = "N", converter = Checks.Positive.class,
            description = "Evaluations at most.")
    int trials;

    @Option(names = "--seed", defaultValue = "1", paramLabel = "S", description = "Random seed of the search.")
    long seed;

    @Option(names = "--threads", paramLabel = "T", converter = Checks.Positive.class,
            description = "Evaluations at once (default: cores / 2).")
    Integer threads;

    @Option(names = "--no-baselines", description = "Skip scoring the uniform configurations beside the search.")
    boolean noBaselines;

    @Option(names = "--out-dir", required = true, paramLabel = "DIR", description = "Directory for the results; one "
            + "that holds results of an earlier search is refused unless --force.")
    Path outDir;

    @Option(names = "--force", description = "Replace the results of an earlier search in --out-dir (its stale "
            + "front-NN files included).")
    boolean force;

    @Option(names = "--json", description = "Print the result as JSON.")
    boolean json;

    @Spec
    CommandSpec spec;

    /** Set by {@link #check()}. */
    private Evaluator.Data calibration;
    private Output output;

    /** The profile against the model and the budgets, the calibration data, then the output directory claimed. */
    @Override
    public Output check() {
        ModelDir dir = model.dir();
        Checks.inputFile("--profile", profile);
        Profile p = Profile.read(profile);
        if (p.layers().size() != dir.config().layers()) {
            throw KvqException.config(profile + " profiles " + p.layers().size() + " layers, but " + dir.root() + " has "
                    + dir.config().layers() + "; calibrate this model first");
        }
        double least = 0;
        for (Profile.Group g : p.groups()) {
            least += g.layers().size() * g.candidates().stream().mapToDouble(c -> Pair.parse(c).averageBits()).min()
                    .orElse(8);
        }
        least /= dir.config().layers();
        Checks.require(maxAvgBits >= least - 1e-9, String.format("--max-avg-bits %s is below %.3f, the fewest average "
                + "bits of the profile's search space (each group at its smallest pair); give %.3f to 8", fmt(maxAvgBits),
                least, least));
        for (double b : budgets) {
            Checks.require(b <= maxAvgBits + 1e-9, "--budgets " + fmt(b) + " is above --max-avg-bits " + fmt(maxAvgBits)
                    + ": the search stays within --max-avg-bits, so it finds nothing for that budget; raise "
                    + "--max-avg-bits to " + fmt(b) + " or drop the budget");
            Checks.require(b >= least - 1e-9, String.format("--budgets %s is below %.3f, the fewest average bits of the "
                    + "profile's search space; give budgets from %.3f to --max-avg-bits", fmt(b), least, least));
        }
        Checks.require(List.of("ppl", "kl", "passkey", "gsm8k").contains(objective.trim().toLowerCase(java.util.Locale.ROOT)),
                "--objective was '" + objective + "', must be ppl, kl, passkey or gsm8k");
        Evaluator.Objective obj = Evaluator.Objective.parse(objective);
        if (obj == Evaluator.Objective.PPL || obj == Evaluator.Objective.KL) {
            Checks.require(prefill < window, "--prefill " + prefill + " must be smaller than --window " + window
                    + ": each window needs a token to score after its prompt");
            Checks.fits(dir, window, "--window " + window, "give a --window of at most " + Checks.positions(dir));
        }
        Checks.inputFile("--data", data);
        calibration = data(dir, obj);
        try (Tokenizer t = model.tokenizer(dir)) {
            if (calibration.passkey() != null) {
                int longest = EvalCommand.longest(t, calibration.passkey().stream().map(Passkey.Item::prompt).toList());
                Checks.fits(dir, longest + 5L, "the longest passkey prompt (" + Checks.tokens(longest) + ") plus the 5 answer "
                        + "tokens", "use a model with more positions");
            }
            if (calibration.problems() != null) {
                int longest = EvalCommand.longest(t, calibration.problems().stream()
                        .map(e -> Gsm8k.prompt(calibration.shots(), e.question())).toList());
                Checks.fits(dir, longest + 256L, "the longest GSM8K prompt (" + Checks.tokens(longest) + " with " + shots
                        + " shots) plus 256 new tokens", "give fewer --shots");
            }
        }
        output = Output.directory("--out-dir", outDir, force, "index.html", "search.json", "pareto.png", "front-*.yaml",
                "best-*.yaml");
        return output;
    }

    private static String fmt(double bits) {
        return bits == Math.rint(bits) ? String.valueOf((long) bits) : String.valueOf(bits);
    }

    @Override
    public Integer call() {
        ModelDir dir = model.dir();
        Profile p = Profile.read(profile);
        KvQuantConfig base = ConfigFiles.parse(Json.write(p.config()));
        Evaluator.Objective obj = Evaluator.Objective.parse(objective);
        int cores = Runtime.getRuntime().availableProcessors();
        int workers = threads != null ? threads : Math.max(1, cores / 2);
        RuntimeOptions runtime = new RuntimeOptions(model.device != null ? model.device : base.device(),
                Math.max(1, cores / workers));
        String runtimeName = model.runtimeOr(base.runtime());
        Progress progress = ConsoleProgress.forConsole(spec.commandLine().getErr(), json);
        Tuner.Result result = Tuner.run(p, dir.config().shape(), base,
                () -> new Evaluator(dir, runtimeName, runtime, obj, calibration),
                new Tuner.Options(maxAvgBits, trials, seed, workers), progress);
        Map<String, Double> baselines = new LinkedHashMap<>();
        Double fp;
        try (Evaluator e = new Evaluator(dir, runtimeName, new RuntimeOptions(runtime.device(), 0), obj, calibration)) {
            fp = e.metric(null);
            if (!noBaselines) {
                for (Pair pair : Pair.KVTUNER) {
                    // the search already scored the uniform configurations its space holds within the budget
                    LayerBits bits = pair.bits();
                    Double known = result.evaluated().stream().filter(pt -> pt.feasible()
                            && pt.layers().values().stream().allMatch(bits::equals)).findFirst()
                            .map(pt -> metric(obj, pt.score())).orElse(null);
                    baselines.put(pair.name(), known != null ? known
                            : e.metric(base.toBuilder().bits(pair.keyBits(), pair.valueBits()).build()));
                }
            }
        }
        write(dir, base, obj, result, baselines, fp);
        return 0;
    }

    private Evaluator.Data data(ModelDir dir, Evaluator.Objective obj) {
        return switch (obj) {
            case PPL, KL -> {
                String text = EvalCommand.readText(data);
                Checks.require(offset < text.length(), "--offset " + offset + " is beyond the end of --data " + data + " ("
                        + text.length() + " characters)");
                try (Tokenizer t = model.tokenizer(dir)) {
                    List<int[]> all = TextWindows.of(t, text, offset, length, window);
                    yield new Evaluator.Data(all.subList(0, Math.min(windows, all.size())), prefill, null, null, null);
                }
            }
            case PASSKEY -> new Evaluator.Data(null, prefill, Passkey.read(data, offset, limit), null, null);
            case GSM8K -> new Evaluator.Data(null, prefill, null,
                    Gsm8k.read(train != null ? train : data.resolveSibling("train.jsonl"), shots), Gsm8k.read(data, limit));
        };
    }

    private double metric(Evaluator.Objective obj, double score) {
        return obj.accuracy() ? -score : score;
    }

    private void write(ModelDir dir, KvQuantConfig base, Evaluator.Objective obj, Tuner.Result result,
                       Map<String, Double> baselines, Double fp) {
        String name = obj.name().toLowerCase(java.util.Locale.ROOT);
        List<Double> targets = budgets.isEmpty() ? List.of(maxAvgBits) : budgets;
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("model", dir.name());
        doc.put("scheme", ConfigFiles.toMap(base));
        doc.put("objective", name);
        doc.put("max_avg_bits", maxAvgBits);
        doc.put("space_size", result.spaceSize());
        doc.put("exhaustive", result.exhaustive());
        doc.put("evaluations", result.modelEvaluations());
        doc.put("fp_" + name, fp);
        doc.put("uniform", baselines);
        Path staged = output.staging();
        List<Map<String, Object>> front = new ArrayList<>();
        int i = 0;
        for (Tuner.Point pt : result.front()) {
            String file = String.format("front-%02d-%.3fbits.yaml", i++, pt.avgBits());
            ConfigFiles.writePerLayer(staged.resolve(file), pt.layers());
            front.add(point(pt, obj, file));
        }
        doc.put("front", front);
        Map<String, Object> best = new LinkedHashMap<>();
        for (double budget : targets) {
            Tuner.Point pt = result.best(budget);
            if (pt == null) {
                continue;
            }
            String stem = String.format("best-%.2fbits", budget);
            String file = stem + ".yaml";
            PerLayerFiles.write(staged, stem, pt.layers(), ConfigFiles.toMap(base),
                    "the calibrated scheme with the tuned per-layer bits");
            best.put(String.format("%.2f", budget), point(pt, obj, file));
        }
        doc.put("best", best);
        List<Map<String, Object>> all = new ArrayList<>();
        result.evaluated().forEach(pt -> all.add(point(pt, obj, null)));
        doc.put("evaluated", all);
        try {
            Files.writeString(staged.resolve("search.json"), Json.write(doc));
        } catch (IOException e) {
            throw new KvqException(dev.kvq.ErrorCode.IO, "cannot write to " + outDir + ": " + e.getMessage(), e);
        }
        Report rep = new Report("kvq tune: " + dir.name() + ", objective " + name);
        Map<String, List<double[]>> series = new LinkedHashMap<>();
        series.put("evaluated", result.evaluated().stream().filter(Tuner.Point::feasible)
                .map(pt -> new double[] {pt.avgBits(), metric(obj, pt.score())}).toList());
        series.put("Pareto front", result.front().stream().map(pt -> new double[] {pt.avgBits(), metric(obj,
                pt.score())}).toList());
        if (!baselines.isEmpty()) {
            series.put("uniform", baselines.entrySet().stream().filter(e -> Pair.parse(e.getKey()).averageBits()
                    <= Math.max(maxAvgBits, 8)).map(e -> new double[] {Pair.parse(e.getKey()).averageBits(),
                    e.getValue()}).toList());
        }
        rep.chart("pareto.png", "Pareto front: " + name + " against average KV bits", "average KV bits", name, series, false);
        rep.write(staged);
        output.publish();
        PrintWriter w = spec.commandLine().getOut();
        if (json) {
            w.println(Json.write(doc));
        } else {
            w.printf("%s: %s search over %,d configurations, %d evaluated (%s), objective %s on calibration data%n",
                    dir.name(), result.exhaustive() ? "exhaustive" : "NSGA-II", result.spaceSize(),
                    result.modelEvaluations(), result.exhaustive() ? "all within the budget" : "budget " + trials, name);
            w.printf("full precision %s %.4f%n", name, fp);
            if (!baselines.isEmpty()) {
                w.printf("uniform:");
                baselines.forEach((k, v) -> w.printf(" %s %.4f", k, v));
                w.println();
            }
            w.printf("Pareto front (avg bits, %s, per-layer bits):%n", name);
            for (Tuner.Point pt : result.front()) {
                w.printf("  %6.3f  %10.4f  %s%n", pt.avgBits(), metric(obj, pt.score()), layersLabel(pt.layers()));
            }
            for (double budget : targets) {
                Tuner.Point pt = result.best(budget);
                w.printf("best within %.2f bits: %s%n", budget, pt == null ? "none" : String.format("%.3f bits, %s %.4f "
                        + "-> %s", pt.avgBits(), name, metric(obj, pt.score()), String.format("best-%.2fbits.yaml", budget)));
            }
            w.printf("written to %s (search.json, pareto.png, index.html, per-layer YAML files)%n", outDir);
        }
        w.flush();
    }

    private Map<String, Object> point(Tuner.Point pt, Evaluator.Objective obj, String file) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("avg_bits", pt.avgBits());
        m.put("avg_k_bits", pt.avgKeyBits());
        m.put("avg_v_bits", pt.avgValueBits());
        m.put(obj.name().toLowerCase(java.util.Locale.ROOT), pt.feasible() ? metric(obj, pt.score()) : null);
        m.put("feasible", pt.feasible());
        m.put("layers", layersLabel(pt.layers()));
        if (file != null) {
            m.put("file", file);
        }
        return m;
    }

    static String layersLabel(Map<Integer, LayerBits> layers) {
        StringBuilder sb = new StringBuilder();
        new TreeMap<>(layers).forEach((l, b) -> sb.append(sb.isEmpty() ? "" : " ").append(b.label()));
        return sb.toString();
    }
}
