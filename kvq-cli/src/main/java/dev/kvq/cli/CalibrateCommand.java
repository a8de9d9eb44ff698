package dev.kvq.cli;

import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.CachePolicy;
import dev.kvq.eval.Progress;
import dev.kvq.eval.TextWindows;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.tuner.AdditiveKl;
import dev.kvq.tuner.Calibration;
import dev.kvq.tuner.Pair;
import dev.kvq.tuner.PerLayerFiles;
import dev.kvq.tuner.Profile;
import dev.kvq.tuner.Schemes;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/** {@code kvq calibrate}: per-layer sensitivity of a model to KV quantization, and the pruned search space. */
@Command(name = "calibrate", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Measure, for every layer and every (key bits, value bits) pair of {2,4,8}, the relative error of "
            + "the layer's attention output when only its K/V are quantized (both, keys only, values only) and the "
            + "next-token KL of the model with only that layer quantized; keep each layer's Pareto pairs and cluster "
            + "similar layers into groups. Writes the profile kvq tune reads.",
            "Needs model.safetensors (Llama architecture) for the queries, and the model's runtime file for the KL.",
            "Writes the profile to --out and, with the KL, the additive estimate's best mix per budget into a folder "
                + "named after it (profile.json -> profile-estimates/); an --out that exists is refused unless --force."})
final class CalibrateCommand implements Callable<Integer>, CheckedCommand {
    @Mixin
    ModelOptions model;

    @Option(names = "--data", required = true, paramLabel = "FILE", description = "Calibration text.")
    Path data;

    @Option(names = "--offset", defaultValue = "0", paramLabel = "N", converter = Checks.NotNegative.class,
            description = "First character of the calibration text.")
    int offset;

    @Option(names = "--length", defaultValue = "40000", paramLabel = "N", converter = Checks.NotNegative.class,
            description = "Characters (0 = to the end).")
    int length;

    @Option(names = "--scheme", defaultValue = "pertoken", paramLabel = "pertoken|kivi", converter = Checks.Scheme.class,
            description = "KVTuner's scheme to calibrate: per-token or KIVI (per-channel keys); per-token-asym and "
                + "per-channel-asym are accepted too.")
    String scheme;

    @Option(names = "--backend", defaultValue = "vanilla", paramLabel = "NAME",
            description = "Quantizer backend of the candidates (kvq backends lists them).")
    String backend;

    @Option(names = "--policy", defaultValue = "append", paramLabel = "kvtuner|append", converter = Checks.Policy.class,
            description = "Cache policy the candidates run under.")
    String policy;

    @Option(names = "--window", defaultValue = "256", paramLabel = "W", converter = Checks.Window.class,
            description = "Tokens per calibration window, at most the model's positions.")
    int window;

    @Option(names = "--windows", defaultValue = "4", paramLabel = "N", converter = Checks.Positive.class,
            description = "Windows for the attention errors.")
    int windows;

    @Option(names = "--kl-windows", defaultValue = "2", paramLabel = "N", converter = Checks.NotNegative.class,
            description = "Windows for the end-to-end KL (0 skips it and the additive estimate; 16 makes the estimate "
                + "steadier at 8x the time of the default).")
    int klWindows;

    @Option(names = "--prefill", defaultValue = "32", paramLabel = "P", converter = Checks.Positive.class,
            description = "Prompt tokens per KL window, fewer than --window.")
    int prefill;

    @Option(names = "--groups", paramLabel = "G", converter = Checks.Positive.class,
            description = "Layer groups, 1 to the model's layers (default: half the layers, at most 8).")
    Integer groups;

    @Option(names = "--out", required = true, paramLabel = "profile.json", description = "The profile kvq tune reads; "
            + "the estimates go to a folder beside it named after it (profile-estimates/).")
    Path out;

    @Option(names = "--force", description = "Replace an earlier profile at --out and its estimates folder.")
    boolean force;

    @Option(names = "--json", description = "Print the profile as JSON.")
    boolean json;

    @Spec
    CommandSpec spec;

    /** Set by {@link #check()}. */
    private String text;
    private Output output;

    /** The folder of the estimates: {@code profile.json -> profile-estimates}. */
    private String estimatesFolder() {
        String name = out.getFileName().toString();
        int dot = name.lastIndexOf('.');
        return (dot > 0 ? name.substring(0, dot) : name) + "-estimates";
    }

    /** The options against the model, the calibration text, then --out claimed. */
    @Override
    public Output check() {
        ModelDir dir = model.dir();
        dir.require("model.safetensors", "calibration reads the weights to compute each layer's queries");
        KvCaches.spec(Schemes.base(scheme, backend, dir.config().headDim(), CachePolicy.parse(policy)).build(),
                dir.config().shape());
        if (groups != null) {
            Checks.range("--groups", groups, 1, dir.config().layers(), "(the layers of " + dir.name() + ")");
        }
        Checks.require(prefill < window, "--prefill " + prefill + " must be smaller than --window " + window
                + ": each KL window needs a token to score after its prompt");
        Checks.fits(dir, window, "--window " + window, "give a --window of at most " + Checks.positions(dir));
        text = EvalCommand.readText(data);
        Checks.require(offset < text.length(), "--offset " + offset + " is beyond the end of --data " + data + " ("
                + text.length() + " characters)");
        try (Tokenizer tokenizer = model.tokenizer(dir)) {
            TextWindows.of(tokenizer, text, offset, length, window);
        }
        output = Output.file("--out", out, force, estimatesFolder() + "/*");
        return output;
    }

    @Override
    public Integer call() {
        ModelDir dir = model.dir();
        int g = groups != null ? groups : Math.max(1, Math.min(8, (dir.config().layers() + 1) / 2));
        Calibration.Options o = new Calibration.Options(scheme, backend, CachePolicy.parse(policy), window, windows,
                klWindows, prefill, g, Pair.KVTUNER);
        Profile profile;
        Progress progress = ConsoleProgress.forConsole(spec.commandLine().getErr(), json);
        try (Decoder decoder = klWindows > 0 ? Runtimes.discover().get(model.runtimeOr("onnx")).open(dir,
                model.device != null ? model.device : "cpu") : null; Tokenizer tokenizer = model.tokenizer(dir)) {
            profile = Calibration.run(dir, decoder, tokenizer, text, offset, length, o, progress);
        }
        Path staged = output.staging();
        profile.write(staged.resolve(out.getFileName().toString()));
        // what the profile predicts each budget can reach; each budget's best mix as files in the folder named after
        // the profile
        List<AdditiveKl.BudgetEstimate> estimates = klWindows > 0 ? AdditiveKl.budgets(profile, 2.5, 3.0, 3.5, 4.0, 5.0)
                : List.of();
        if (!estimates.isEmpty()) {
            PerLayerFiles.writeEstimates(staged.resolve(estimatesFolder()), profile, estimates);
        }
        PrintWriter w = spec.commandLine().getOut();
        if (json) {
            w.println(Json.write(profile));
        } else {
            List<String> pairs = Pair.KVTUNER.stream().map(Pair::name).toList();
            w.printf("%s, %s, backend %s: relative error of each layer's attention output (K and V quantized)%n",
                    dir.name(), profile.scheme(), backend);
            w.printf("%-6s", "layer");
            pairs.forEach(p -> w.printf(" %8s", p));
            w.printf("   Pareto pairs%n");
            for (Profile.LayerProfile l : profile.layers()) {
                w.printf("%-6d", l.layer());
                pairs.forEach(p -> w.printf(" %8.4f", l.errors().get(p).attention()));
                w.printf("   %s%n", String.join(" ", l.pareto()));
            }
            if (klWindows > 0) {
                w.printf("%nmean next-token KL with only that layer quantized%n%-6s", "layer");
                pairs.forEach(p -> w.printf(" %8s", p));
                w.println();
                for (Profile.LayerProfile l : profile.layers()) {
                    w.printf("%-6d", l.layer());
                    pairs.forEach(p -> w.printf(" %8.5f", l.errors().get(p).kl()));
                    w.println();
                }
            }
            Map<String, Object> kv = profile.keysVersusValues();
            w.printf("%nkeys vs values: attention error with only keys / only values at 2 bits %.4f / %.4f (%s)",
                    kv.get("mean_key_only_error_at_2_bits"), kv.get("mean_value_only_error_at_2_bits"),
                    Boolean.TRUE.equals(kv.get("keys_matter_more_by_attention_error")) ? "keys matter more"
                            : "values matter more");
            if (kv.containsKey("mean_kl_K2V8")) {
                w.printf("; next-token KL of K2V8 / K8V2 %.5f / %.5f (%s)", kv.get("mean_kl_K2V8"), kv.get("mean_kl_K8V2"),
                        Boolean.TRUE.equals(kv.get("keys_matter_more_by_kl")) ? "keys matter more" : "values matter more");
            }
            w.println();
            w.printf("groups (layers sharing one choice) and their candidates:%n");
            long space = 1;
            for (Profile.Group grp : profile.groups()) {
                w.printf("  layers %-16s %s%n", grp.layers(), String.join(" ", grp.candidates()));
                space *= grp.candidates().size();
            }
            w.printf("search space: %,d configurations (9^%d = %,.0f before pruning); profile written to %s%n", space,
                    dir.config().layers(), Math.pow(9, dir.config().layers()), out);
            printEstimates(w, estimates, out.toAbsolutePath().getParent().resolve(estimatesFolder()));
        }
        output.publish();
        w.flush();
        return 0;
    }

    /**
     * What the profile predicts each budget can reach at best, over the unpruned space: the additive KL estimate's
     * best mix against the best uniform pair within the same budget.
     */
    private static void printEstimates(PrintWriter w, List<AdditiveKl.BudgetEstimate> estimates, Path dir) {
        if (estimates.isEmpty()) {
            return;
        }
        w.printf("%nadditive estimate (sum of the single-layer KLs above; layers interact, so a guide, not a measurement;%n"
                + "each best mix is written to %s as estimate-B.BBbits.yaml and .kvq.yaml)%n", dir);
        w.printf("%-7s %-9s %-9s %-13s %-9s %s%n", "budget", "mix bits", "est. KL", "best uniform", "est. KL",
                "best mix (layer 0 first)");
        for (AdditiveKl.BudgetEstimate e : estimates) {
            if (e.uniform() != null) {
                w.printf("%-7.2f %-9.3f %-9.5f %-13s %-9.5f %s%n", e.budget(), e.mix().avgBits(), e.mix().kl(),
                        e.uniform().pairs().getFirst(), e.uniform().kl(), String.join(" ", e.mix().pairs()));
            }
        }
    }
}
