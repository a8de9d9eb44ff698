package dev.kvq.cli;

import dev.kvq.KvqException;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.eval.Gsm8k;
import dev.kvq.eval.Passkey;
import dev.kvq.eval.Progress;
import dev.kvq.eval.TextWindows;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.RuntimeOptions;
import dev.kvq.tuner.Evaluator;
import dev.kvq.tuner.Pair;
import dev.kvq.tuner.Profile;
import dev.kvq.tuner.TuneArtifacts;
import dev.kvq.tuner.Tuner;
import dev.kvq.tuner.Tuning;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
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
        KvQuantConfig base = Tuning.scheme(p);
        Evaluator.Objective obj = Evaluator.Objective.parse(objective);
        int cores = Runtime.getRuntime().availableProcessors();
        int workers = threads != null ? threads : Math.max(1, cores / 2);
        RuntimeOptions runtime = new RuntimeOptions(model.device != null ? model.device : base.device(),
                Math.max(1, cores / workers));
        String runtimeName = model.runtimeOr(base.runtime());
        Progress progress = ConsoleProgress.forConsole(spec.commandLine().getErr(), json);
        Tuning.Outcome outcome = Tuning.run(dir.name(), p, dir.config().shape(), new Tuning.Request(obj,
                new Tuner.Options(maxAvgBits, trials, seed, workers), budgets, !noBaselines),
                () -> new Evaluator(dir, runtimeName, runtime, obj, calibration),
                () -> new Evaluator(dir, runtimeName, new RuntimeOptions(runtime.device(), 0), obj, calibration),
                progress);
        // results go to a staging folder first and move into --out-dir together when the search is done
        TuneArtifacts.Summary summary = TuneArtifacts.write(output.staging(), outcome);
        output.publish();
        print(outcome, summary);
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

    private void print(Tuning.Outcome o, TuneArtifacts.Summary summary) {
        String name = o.objectiveName();
        Tuner.Result result = o.search();
        PrintWriter w = spec.commandLine().getOut();
        if (json) {
            w.println(Json.write(summary));
        } else {
            w.printf("%s: %s search over %,d configurations, %d evaluated (%s), objective %s on calibration data%n",
                    o.model(), result.exhaustive() ? "exhaustive" : "NSGA-II", result.spaceSize(),
                    result.modelEvaluations(), result.exhaustive() ? "all within the budget" : "budget " + trials, name);
            w.printf("full precision %s %.4f%n", name, o.fullPrecision());
            if (!o.uniform().isEmpty()) {
                w.printf("uniform:");
                o.uniform().forEach((k, v) -> w.printf(" %s %.4f", k, v));
                w.println();
            }
            w.printf("Pareto front (avg bits, %s, per-layer bits):%n", name);
            for (Tuner.Point pt : result.front()) {
                w.printf("  %6.3f  %10.4f  %s%n", pt.avgBits(), o.metric(pt), TuneArtifacts.layersLabel(pt.layers()));
            }
            for (double budget : o.request().budgets()) {
                TuneArtifacts.PointSummary pt = summary.best().get(String.format("%.2f", budget));
                w.printf("best within %.2f bits: %s%n", budget, pt == null ? "none" : String.format("%.3f bits, %s %.4f "
                        + "-> %s", pt.avgBits(), name, pt.metric(), pt.file()));
            }
            w.printf("written to %s (search.json, pareto.png, index.html, per-layer YAML files)%n", outDir);
        }
        w.flush();
    }
}
