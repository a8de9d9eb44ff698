package dev.kvq.cli;

import dev.kvq.config.KvQuantConfig;
import dev.kvq.eval.Gsm8k;
import dev.kvq.eval.LikelihoodEval;
import dev.kvq.eval.Passkey;
import dev.kvq.eval.Report;
import dev.kvq.eval.TextWindows;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code kvq eval}: what quantization costs. */
@Command(name = "eval", mixinStandardHelpOptions = true, description = "Measure what KV quantization costs.",
        subcommands = {EvalCommand.Ppl.class, EvalCommand.Agree.class, EvalCommand.Gsm8kCommand.class,
            EvalCommand.PasskeyCommand.class, LongBenchCommand.class})
final class EvalCommand {

    static String readText(Path file) {
        return Checks.readText("--data", file);
    }

    /** The longest of {@code texts} in tokens. */
    static int longest(Tokenizer tokenizer, List<String> texts) {
        int max = 0;
        for (String t : texts) {
            max = Math.max(max, tokenizer.encode(t).length);
        }
        return max;
    }

    /** Likelihood of text windows: {@code eval ppl} and {@code eval agree} differ only in what they print. */
    abstract static class Likelihood extends ModelCommand implements Callable<Integer> {
        @Option(names = "--data", required = true, paramLabel = "FILE", description = "Text file.")
        Path data;

        @Option(names = "--offset", defaultValue = "0", paramLabel = "N", converter = Checks.NotNegative.class,
                description = "First character of the slice.")
        int offset;

        @Option(names = "--length", defaultValue = "20000", paramLabel = "N", converter = Checks.NotNegative.class,
                description = "Characters of the slice (0 = to the end).")
        int length;

        @Option(names = "--window", defaultValue = "256", paramLabel = "W", converter = Checks.Window.class,
                description = "Tokens per window, at most the model's positions.")
        int window;

        @Option(names = "--prefill", defaultValue = "32", paramLabel = "P", converter = Checks.Positive.class,
                description = "Prompt tokens per window, fewer than --window.")
        int prefill;

        @Option(names = "--batch", defaultValue = "8", paramLabel = "B", converter = Checks.Positive.class,
                description = "Windows run together.")
        int batch;

        @Option(names = "--no-fp", description = "Skip the full-precision run (no fp_ppl, KL or agreement).")
        boolean noFp;

        /** The windows of --data, cut by {@link #checkModel}. */
        private List<int[]> windows;

        abstract boolean agreement();

        @Override
        void checkModel(ModelDir dir) {
            String text = readText(data);
            Checks.require(offset < text.length(), "--offset " + offset + " is beyond the end of --data " + data + " ("
                    + text.length() + " characters)");
            Checks.require(prefill < window, "--prefill " + prefill + " must be smaller than --window " + window
                    + ": each window needs a token to score after its prompt");
            Checks.fits(dir, window, "--window " + window, "give a --window of at most " + Checks.positions(dir));
            try (Tokenizer tokenizer = model.tokenizer(dir)) {
                windows = TextWindows.of(tokenizer, text, offset, length, window);
            }
        }

        @Override
        public Integer call() {
            ModelDir dir = model.dir();
            KvQuantConfig primary = primary();
            Map<String, CacheFactory> configs = factories(configs(), dir);
            try (Decoder decoder = model.open(dir, primary.runtime(), primary.device());
                 Tokenizer tokenizer = model.tokenizer(dir)) {
                List<LikelihoodEval.Row> rows = LikelihoodEval.sweep(decoder, configs, windows,
                        new LikelihoodEval.Options(prefill, batch, !noFp), progress());
                print(dir, decoder, windows, rows);
            }
            return 0;
        }

        private void print(ModelDir dir, Decoder decoder, List<int[]> windows, List<LikelihoodEval.Row> rows) {
            PrintWriter out = out();
            if (json) {
                out.println(Json.write(rows.size() == 1 ? rows.getFirst() : Map.of("results", rows)));
            } else {
                out.printf("%s on %s: %d windows of %d tokens from %s [%d, +%d), prefill %d, %d scored tokens per "
                        + "config%n", dir.name(), decoder.device(), windows.size(), window, data.getFileName(), offset,
                        length, prefill, rows.getFirst().tokens());
                if (agreement()) {
                    out.printf("%-22s %9s %10s %10s %9s %12s%n", "config", "avg bits", "mean KL", "top-1 agree", "ppl",
                            "fp ppl");
                } else {
                    out.printf("%-22s %9s %9s %9s %8s %12s %10s%n", "config", "avg bits", "ppl", "fp ppl", "vs fp",
                            "KV bytes", "bytes/tok");
                }
                for (LikelihoodEval.Row r : rows) {
                    String bits = r.avgBits() == null ? "32" : String.format("%.2f", r.avgBits());
                    if (agreement()) {
                        out.printf("%-22s %9s %10s %10s %9.4f %12s%n", r.config(), bits, fmt(r.meanKl(), "%.6f"),
                                fmt(r.top1Agreement(), "%.4f"), r.ppl(), fmt(r.fpPpl(), "%.4f"));
                    } else {
                        out.printf("%-22s %9s %9.4f %9s %8s %,12d %10.1f%n", r.config(), bits, r.ppl(),
                                fmt(r.fpPpl(), "%.4f"), r.vsFp() == null ? "-" : String.format("%+.2f%%", 100 * r.vsFp()),
                                r.kvBytes(), r.bytesPerToken());
                    }
                }
            }
            out.flush();
            if (report != null) {
                Report rep = new Report("kvq eval " + (agreement() ? "agree" : "ppl") + ": " + dir.name());
                rep.paragraph(windows.size() + " windows of " + window + " tokens of " + data + " from character " + offset
                        + ", prefill " + prefill + " tokens.");
                List<List<Object>> table = new ArrayList<>();
                Map<String, List<double[]>> series = new LinkedHashMap<>();
                for (LikelihoodEval.Row r : rows) {
                    table.add(java.util.Arrays.asList(r.config(), r.avgKeyBits(), r.avgValueBits(), r.ppl(), r.fpPpl(),
                            r.meanKl(), r.top1Agreement(), r.kvBytes(), r.bytesPerToken()));
                    if (r.avgBits() != null) {
                        series.computeIfAbsent(r.config().split(" ")[0], k -> new ArrayList<>())
                                .add(new double[] {r.avgBits(), r.ppl()});
                    }
                }
                rep.table(List.of("config", "avg K bits", "avg V bits", "ppl", "fp ppl", "mean KL", "top-1", "KV bytes",
                        "bytes/token"), table);
                if (!series.isEmpty()) {
                    Double fp = rows.getFirst().fpPpl();
                    if (fp != null) {
                        double lo = series.values().stream().flatMap(List::stream).mapToDouble(p -> p[0]).min().orElse(2);
                        double hi = series.values().stream().flatMap(List::stream).mapToDouble(p -> p[0]).max().orElse(8);
                        series.put("full precision", List.of(new double[] {lo, fp}, new double[] {hi, fp}));
                    }
                    rep.chart("ppl_vs_bits.png", "Perplexity against average KV bits", "average KV bits", "perplexity",
                            series, true);
                }
                writeReport(rep);
            }
        }

        private static String fmt(Object v, String pattern) {
            return v == null ? "-" : String.format(pattern, v);
        }
    }

    @Command(name = "ppl", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"Perplexity of text windows through the quantized cache, beside the full-precision cache.",
                "Each window: the first P tokens are the prompt, every later token is predicted by a decode step."})
    static final class Ppl extends Likelihood {
        @Override
        boolean agreement() {
            return false;
        }
    }

    @Command(name = "agree", mixinStandardHelpOptions = true, sortOptions = false,
            description = "Mean KL divergence and top-1 agreement of next-token distributions against full precision.")
    static final class Agree extends Likelihood {
        @Override
        boolean agreement() {
            return true;
        }
    }

    @Command(name = "gsm8k", mixinStandardHelpOptions = true, sortOptions = false,
            description = {"GSM8K exact match, KVTuner's protocol (few-shot demonstrations from the training split, "
                + "greedy, stop at the next 'Question:').",
                "The small models shipped with kvq cannot do arithmetic: expect an accuracy near zero; this proves the "
                + "harness."})
    static final class Gsm8kCommand extends ModelCommand implements Callable<Integer> {
        @Option(names = "--data", required = true, paramLabel = "test.jsonl",
                description = "GSM8K problems, one JSON object {question, answer} per line.")
        Path data;

        @Option(names = "--train", paramLabel = "train.jsonl", description = "Demonstrations (default: train.jsonl "
                + "beside --data).")
        Path train;

        @Option(names = "--shots", defaultValue = "4", paramLabel = "N", converter = Checks.NotNegative.class,
                description = "Demonstrations before each problem.")
        int shots;

        @Option(names = "--limit", defaultValue = "0", paramLabel = "N", converter = Checks.NotNegative.class,
                description = "Problems (0 = all).")
        int limit;

        @Option(names = "--max-new-tokens", defaultValue = "256", paramLabel = "N", converter = Checks.Positive.class,
                description = "Tokens generated per problem at most.")
        int maxNewTokens;

        @Option(names = "--batch", defaultValue = "8", paramLabel = "B", converter = Checks.Positive.class,
                description = "Problems run together.")
        int batch;

        @Option(names = "--no-fp", description = "Skip the full-precision run.")
        boolean noFp;

        /** Read by {@link #checkModel}. */
        private List<Gsm8k.Example> demos;
        private List<Gsm8k.Example> tests;

        @Override
        void checkModel(ModelDir dir) {
            Path trainFile = train != null ? train : data.resolveSibling("train.jsonl");
            Checks.inputFile("--data", data);
            if (shots > 0) {
                Checks.inputFile(train != null ? "--train" : "--train (train.jsonl beside --data)", trainFile);
            }
            demos = shots > 0 ? Gsm8k.read(trainFile, shots) : List.of();
            tests = Gsm8k.read(data, limit);
            try (Tokenizer tokenizer = model.tokenizer(dir)) {
                int longest = longest(tokenizer, tests.stream().map(t -> Gsm8k.prompt(demos, t.question())).toList());
                Checks.fits(dir, (long) longest + maxNewTokens, "the longest GSM8K prompt (" + Checks.tokens(longest) + " with "
                        + shots + " shots) plus --max-new-tokens " + maxNewTokens, "give fewer --shots or a smaller "
                        + "--max-new-tokens");
            }
        }

        @Override
        public Integer call() {
            ModelDir dir = model.dir();
            KvQuantConfig primary = primary();
            List<Gsm8k.Row> rows;
            try (Decoder decoder = model.open(dir, primary.runtime(), primary.device());
                 Tokenizer tokenizer = model.tokenizer(dir)) {
                Map<String, CacheFactory> runs = new LinkedHashMap<>();
                if (!noFp || configs().isEmpty()) {
                    runs.put("fp", CacheFactory.fullPrecision(dir.config().shape()));
                }
                runs.putAll(factories(configs(), dir));
                rows = Gsm8k.sweep(decoder, tokenizer, runs, demos, tests, maxNewTokens, batch, progress());
            }
            PrintWriter out = out();
            if (json) {
                out.println(Json.write(Map.of("shots", shots, "results", rows)));
            } else {
                out.printf("GSM8K, %d-shot, %d problems%n", shots, tests.size());
                for (Gsm8k.Row r : rows) {
                    out.printf("%-22s accuracy %.4f (%d/%d)%n", r.config(), r.accuracy(), r.correct(), r.n());
                }
            }
            out.flush();
            return 0;
        }
    }

    @Command(name = "passkey", mixinStandardHelpOptions = true, sortOptions = false,
            description = "Passkey retrieval accuracy (first 5 generated characters against answer[:5]), with the "
                    + "full-precision accuracy beside it.")
    static final class PasskeyCommand extends ModelCommand implements Callable<Integer> {
        @Option(names = "--data", required = true, paramLabel = "test.jsonl",
                description = "Passkey prompts, one JSON object {prompt, answer} per line.")
        Path data;

        @Option(names = "--offset", defaultValue = "0", paramLabel = "N", converter = Checks.NotNegative.class,
                description = "First prompt.")
        int offset;

        @Option(names = "--limit", defaultValue = "0", paramLabel = "N", converter = Checks.NotNegative.class,
                description = "Prompts (0 = all).")
        int limit;

        @Option(names = "--batch", defaultValue = "16", paramLabel = "B", converter = Checks.Positive.class,
                description = "Prompts run together.")
        int batch;

        @Option(names = "--no-fp", description = "Skip the full-precision run.")
        boolean noFp;

        /** Read by {@link #checkModel}. */
        private List<Passkey.Item> items;

        @Override
        void checkModel(ModelDir dir) {
            Checks.inputFile("--data", data);
            items = Passkey.read(data, offset, limit);
            try (Tokenizer tokenizer = model.tokenizer(dir)) {
                int longest = longest(tokenizer, items.stream().map(Passkey.Item::prompt).toList());
                Checks.fits(dir, longest + 5L, "the longest passkey prompt (" + Checks.tokens(longest) + ") plus the 5 answer "
                        + "tokens", "use a model with more positions");
            }
        }

        @Override
        public Integer call() {
            ModelDir dir = model.dir();
            KvQuantConfig primary = primary();
            Passkey.Sweep sweep;
            try (Decoder decoder = model.open(dir, primary.runtime(), primary.device());
                 Tokenizer tokenizer = model.tokenizer(dir)) {
                sweep = Passkey.sweep(decoder, tokenizer, !noFp || configs().isEmpty(), factories(configs(), dir), items,
                        batch, progress());
            }
            List<Passkey.Row> rows = sweep.rows();
            PrintWriter out = out();
            if (json) {
                if (rows.isEmpty()) {
                    out.println(Json.write(Map.of("fp_accuracy", sweep.fpAccuracy(), "n", sweep.n())));
                } else {
                    out.println(Json.write(rows.size() == 1 ? rows.getFirst() : Map.of("results", rows)));
                }
            } else {
                out.printf("passkey, %d prompts from %d; fp accuracy %s%n", items.size(), offset,
                        sweep.fpAccuracy() == null ? "-" : String.format("%.4f", sweep.fpAccuracy()));
                for (Passkey.Row r : rows) {
                    out.printf("%-22s accuracy %.4f, avg bits K %.2f V %.2f, peak KV %,d bytes%n", r.config(),
                            r.accuracy(), r.avgKeyBits(), r.avgValueBits(), r.kvBytes());
                }
            }
            out.flush();
            if (report != null && !rows.isEmpty()) {
                Report rep = new Report("kvq eval passkey: " + dir.name());
                Map<String, List<double[]>> series = new LinkedHashMap<>();
                List<List<Object>> table = new ArrayList<>();
                for (Passkey.Row r : rows) {
                    series.computeIfAbsent(r.config().split(" ")[0], k -> new ArrayList<>())
                            .add(new double[] {r.avgBits(), r.accuracy()});
                    table.add(List.of(r.config(), r.avgBits(), r.accuracy(), r.kvBytes()));
                }
                rep.table(List.of("config", "avg bits", "accuracy", "peak KV bytes"), table);
                rep.chart("accuracy_vs_bits.png", "Passkey accuracy against average KV bits", "average KV bits",
                        "accuracy", series, true);
                writeReport(rep);
            }
            return 0;
        }
    }
}
