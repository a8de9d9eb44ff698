package dev.kvq.cli;

import dev.kvq.config.KvQuantConfig;
import dev.kvq.eval.LongBench;
import dev.kvq.eval.Report;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.CharTokenizer;
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
import picocli.CommandLine.Help.Visibility;
import picocli.CommandLine.Option;

/** {@code kvq eval longbench}: KVTuner's long-context benchmark. */
@Command(name = "longbench", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"LongBench (v1) tasks found in a data directory: prompts from dataset2prompt.json, middle "
            + "truncation to --max-length tokens, greedy generation up to dataset2maxlen.json, each task's metric; the "
            + "full-precision cache side by side.",
            "Character models need --unknown-chars replace for LongBench text; the replaced count is reported.",
            "Tasks read from DIR/damaged (text with encoding damage) are marked damaged: their scores are not "
                + "comparable with published ones."})
final class LongBenchCommand extends ModelCommand implements Callable<Integer> {
    @Option(names = "--data", required = true, paramLabel = "DIR", description = "LongBench data directory.")
    Path data;

    @Option(names = "--tasks", split = ",", paramLabel = "t1,t2,...", showDefaultValue = Visibility.NEVER, description = "Tasks (default: every task file "
            + "in DIR and DIR/damaged).")
    List<String> tasks = new ArrayList<>();

    @Option(names = "--limit", defaultValue = "0", paramLabel = "N", converter = Checks.NotNegative.class,
            description = "Examples per task (0 = all).")
    int limit;

    @Option(names = "--max-length", defaultValue = "0", paramLabel = "L", converter = Checks.NotNegative.class,
            description = "Prompt tokens; with the task's generation length, at most the model's positions (0: the "
                + "model's positions minus the task's generation length).")
    int maxLength;

    @Option(names = "--batch", defaultValue = "4", paramLabel = "B", converter = Checks.Positive.class,
            description = "Examples run together.")
    int batch;

    @Option(names = "--no-fp", description = "Skip the full-precision run.")
    boolean noFp;

    /** Read by {@link #checkModel}. */
    private List<LongBench.Task> loaded;

    @Override
    void checkModel(ModelDir dir) {
        Checks.inputDirectory("--data", data);
        Checks.inputFile("--data (LongBench's prompt templates)", data.resolve("dataset2prompt.json"));
        Checks.inputFile("--data (LongBench's generation lengths)", data.resolve("dataset2maxlen.json"));
        loaded = LongBench.load(data, tasks, limit);
        int generate = loaded.stream().mapToInt(LongBench.Task::maxNewTokens).max().orElse(0);
        LongBench.Task longest = loaded.stream().filter(t -> t.maxNewTokens() == generate).findFirst().orElseThrow();
        if (maxLength > 0) {
            Checks.fits(dir, (long) maxLength + generate, "--max-length " + maxLength + " plus " + longest.name()
                    + "'s " + generate + " generated tokens", "give a --max-length of at most "
                    + Math.max(0, Checks.positions(dir) - generate));
        } else {
            Checks.fits(dir, 16L + generate, longest.name() + "'s " + generate + " generated tokens after a prompt of "
                    + "at least 16", "leave out " + longest.name());
        }
    }

    @Override
    public Integer call() {
        ModelDir dir = model.dir();
        if (loaded.stream().anyMatch(t -> dev.kvq.eval.LongBenchMetrics.forTask(t.name()).usesJieba())) {
            // jieba announces its dictionary on standard output while it loads: keep that chatter out of the results
            java.io.PrintStream stdout = System.out;
            System.setOut(new java.io.PrintStream(java.io.OutputStream.nullOutputStream()));
            try {
                dev.kvq.eval.LongBenchMetrics.load();
            } finally {
                System.setOut(stdout);
            }
        }
        KvQuantConfig primary = primary();
        Map<String, CacheFactory> runs = new LinkedHashMap<>();
        configs().forEach((name, c) -> runs.put(name, factory(c, dir)));
        if (!noFp || runs.isEmpty()) {
            runs.put("fp", CacheFactory.fullPrecision(dir.config().shape()));
        }
        LongBench.Comparison result;
        try (Decoder decoder = model.open(dir, primary.runtime(), primary.device()); Tokenizer tokenizer = model.tokenizer(dir)) {
            java.util.function.LongSupplier replaced = tokenizer instanceof CharTokenizer c ? c::replaced : null;
            result = LongBench.compare(decoder, tokenizer, runs, loaded, maxLength, batch, replaced, progress());
        }
        List<String> names = result.configs();
        PrintWriter out = out();
        if (json) {
            out.println(Json.write(Map.of("tasks", result.tasks(), "average", result.average())));
        } else {
            out.printf("LongBench on %s (%s examples per task)%n", dir.name(), limit == 0 ? "all" : String.valueOf(limit));
            out.printf("%-26s %-16s %4s", "task", "metric", "n");
            names.forEach(n -> out.printf(" %14s", n));
            out.printf(" %10s%n", "replaced");
            for (LongBench.TaskRow r : result.tasks()) {
                out.printf("%-26s %-16s %4d", r.task() + (r.damaged() ? " (damaged)" : ""), r.metric(), r.n());
                names.forEach(n -> out.printf(" %14.2f", r.scores().get(n)));
                out.printf(" %10d%n", r.replacedCharacters());
            }
            out.printf("%-26s %-16s %4s", "average", "", "");
            names.forEach(n -> out.printf(" %14.2f", result.average().get(n)));
            out.println();
        }
        out.flush();
        if (report != null) {
            Report rep = new Report("kvq eval longbench: " + dir.name());
            List<String> header = new ArrayList<>(List.of("task", "metric", "n"));
            header.addAll(names);
            List<List<Object>> table = new ArrayList<>();
            for (LongBench.TaskRow r : result.tasks()) {
                List<Object> cells = new ArrayList<>(List.of(r.task() + (r.damaged() ? " (damaged)" : ""), r.metric(),
                        r.n()));
                names.forEach(n -> cells.add(r.scores().get(n)));
                table.add(cells);
            }
            List<Object> avg = new ArrayList<>(List.of("average", "", ""));
            names.forEach(n -> avg.add(result.average().get(n)));
            table.add(avg);
            rep.table(header, table);
            writeReport(rep);
        }
        return 0;
    }
}
