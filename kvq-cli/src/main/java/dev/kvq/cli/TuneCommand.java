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
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/** {@code kvq tune}: the multi-objective search for per-layer KV precision. */
@Command(name = "tune", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Search the pruned per-layer space of a calibration profile with NSGA-II (MOEA Framework), or "
            + "exhaustively when it is small: minimize average KV bits and the objective on calibration data, under "
            + "--max-avg-bits. Writes the Pareto front (JSON, PNG) and a KVTuner per-layer YAML for each of its points."})
final class TuneCommand implements Callable<Integer> {
    @Mixin
    ModelOptions model;

    @Option(names = "--profile", required = true, paramLabel = "profile.json")
    Path profile;

    @Option(names = "--data", required = true, paramLabel = "FILE", description = "Calibration data: text for "
            + "ppl/kl, test.jsonl for passkey/gsm8k. Keep it apart from evaluation data.")
    Path data;

    @Option(names = "--offset", defaultValue = "0", paramLabel = "N", description = "Text: first character; passkey: "
            + "first prompt.")
    int offset;

    @Option(names = "--length", defaultValue = "20000", paramLabel = "N", description = "Text: characters.")
    int length;

    @Option(names = "--limit", defaultValue = "150", paramLabel = "N", description = "passkey/gsm8k: prompts.")
    int limit;

    @Option(names = "--train", paramLabel = "train.jsonl", description = "gsm8k: demonstrations.")
    Path train;

    @Option(names = "--shots", defaultValue = "4", paramLabel = "N")
    int shots;

    @Option(names = "--window", defaultValue = "256", paramLabel = "W")
    int window;

    @Option(names = "--windows", defaultValue = "8", paramLabel = "N", description = "Text windows scored per candidate.")
    int windows;

    @Option(names = "--prefill", defaultValue = "32", paramLabel = "P")
    int prefill;

    @Option(names = "--max-avg-bits", required = true, paramLabel = "B")
    double maxAvgBits;

    @Option(names = "--budgets", split = ",", paramLabel = "B,B,...", description = "Also write the best config "
            + "within each of these budgets (default: --max-avg-bits).")
    List<Double> budgets = new ArrayList<>();

    @Option(names = "--objective", defaultValue = "ppl", paramLabel = "ppl|kl|passkey|gsm8k")
    String objective;

    @Option(names = "--trials", defaultValue = "200", paramLabel = "N", description = "Evaluations at most.")
    int trials;

    @Option(names = "--seed", defaultValue = "1", paramLabel = "S")
    long seed;

    @Option(names = "--threads", paramLabel = "T", description = "Evaluations at once (default: cores / 2).")
    Integer threads;

    @Option(names = "--no-baselines", description = "Skip scoring the uniform configurations beside the search.")
    boolean noBaselines;

    @Option(names = "--out-dir", required = true, paramLabel = "DIR")
    Path outDir;

    @Option(names = "--json", description = "Print the result as JSON.")
    boolean json;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() {
        ModelDir dir = model.dir();
        Profile p = Profile.read(profile);
        if (p.layers().size() != dir.config().layers()) {
            throw KvqException.config(profile + " profiles " + p.layers().size() + " layers, but " + dir.root() + " has "
                    + dir.config().layers() + "; calibrate this model first");
        }
        KvQuantConfig base = Tuning.scheme(p);
        Evaluator.Objective obj = Evaluator.Objective.parse(objective);
        Evaluator.Data calibration = data(dir, obj);
        int cores = Runtime.getRuntime().availableProcessors();
        int workers = threads != null ? threads : Math.max(1, cores / 2);
        RuntimeOptions runtime = new RuntimeOptions(model.device != null ? model.device : base.device(),
                Math.max(1, cores / workers));
        String runtimeName = model.runtimeOr(base.runtime());
        Progress progress = json ? Progress.none() : ConsoleProgress.forConsole();
        Tuning.Outcome outcome = Tuning.run(dir.name(), p, dir.config().shape(), new Tuning.Request(obj,
                new Tuner.Options(maxAvgBits, trials, seed, workers), budgets, !noBaselines),
                () -> new Evaluator(dir, runtimeName, runtime, obj, calibration),
                () -> new Evaluator(dir, runtimeName, new RuntimeOptions(runtime.device(), 0), obj, calibration),
                progress);
        print(outcome, TuneArtifacts.write(outDir, outcome));
        return 0;
    }

    private Evaluator.Data data(ModelDir dir, Evaluator.Objective obj) {
        return switch (obj) {
            case PPL, KL -> {
                try (Tokenizer t = model.tokenizer(dir)) {
                    List<int[]> all = TextWindows.of(t, EvalCommand.readText(data), offset, length, window);
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
