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
import picocli.CommandLine.Option;

/** {@code kvq eval longbench}: KVTuner's long-context benchmark. */
@Command(name = "longbench", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"LongBench (v1) tasks found in a data directory: prompts from dataset2prompt.json, middle "
            + "truncation to --max-length tokens, greedy generation up to dataset2maxlen.json, each task's metric; the "
            + "full-precision cache side by side.",
            "Character models need --unknown-chars replace for LongBench text; the replaced count is reported."})
final class LongBenchCommand extends ModelCommand implements Callable<Integer> {
    @Option(names = "--data", required = true, paramLabel = "DIR", description = "LongBench data directory.")
    Path data;

    @Option(names = "--tasks", split = ",", paramLabel = "t1,t2,...", description = "Tasks (default: every task file "
            + "in DIR and DIR/damaged).")
    List<String> tasks = new ArrayList<>();

    @Option(names = "--limit", defaultValue = "0", paramLabel = "N", description = "Examples per task (0 = all).")
    int limit;

    @Option(names = "--max-length", defaultValue = "0", paramLabel = "L", description = "Prompt tokens (default: the "
            + "model's positions minus the task's generation length).")
    int maxLength;

    @Option(names = "--batch", defaultValue = "4", paramLabel = "B")
    int batch;

    @Option(names = "--no-fp", description = "Skip the full-precision run.")
    boolean noFp;

    @Override
    public Integer call() {
        ModelDir dir = model.dir();
        List<LongBench.Task> loaded = LongBench.load(data, tasks, limit);
        // jieba announces its dictionary on standard output; keep standard output for results
        java.io.PrintStream stdout = System.out;
        System.setOut(System.err);
        try {
            dev.kvq.eval.LongBenchMetrics.load();
        } finally {
            System.setOut(stdout);
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
            out.printf("%-22s %-16s %4s", "task", "metric", "n");
            names.forEach(n -> out.printf(" %14s", n));
            out.printf(" %10s%n", "replaced");
            for (LongBench.TaskRow r : result.tasks()) {
                out.printf("%-22s %-16s %4d", r.task(), r.metric(), r.n());
                names.forEach(n -> out.printf(" %14.2f", r.scores().get(n)));
                out.printf(" %10d%n", r.replacedCharacters());
            }
            out.printf("%-22s %-16s %4s", "average", "", "");
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
                List<Object> cells = new ArrayList<>(List.of(r.task(), r.metric(), r.n()));
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
