package dev.kvq.eval;

import com.fasterxml.jackson.annotation.JsonAnyGetter;
import com.fasterxml.jackson.annotation.JsonIgnore;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.annotation.JsonPropertyOrder;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Generator;
import dev.kvq.generate.SamplingParams;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.spi.Decoder;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * LongBench (v1) as its {@code pred.py}/{@code eval.py} run it: each task's template filled with the example's
 * context and input; a prompt longer than {@code maxLength} tokens keeps its first and last {@code maxLength/2}
 * tokens (the middle of the context goes); greedy generation of up to the task's {@code dataset2maxlen} tokens; the
 * first line only for trec, triviaqa, samsum and lsht; each example scored by the best of its answers under the task's
 * metric; a task's score is 100 times the mean. kvq applies no chat template (its models have none).
 */
public final class LongBench {
    private static final Set<String> FIRST_LINE = Set.of("trec", "triviaqa", "samsum", "lsht");
    private static final ObjectMapper JSON = new ObjectMapper();

    private LongBench() {
    }

    public record Example(String input, String context, List<String> answers, List<String> allClasses, String id) {
    }

    /**
     * A task; {@code damaged} marks one read from the data directory's {@code damaged/} folder (text with encoding
     * damage), whose scores are not comparable with published ones.
     */
    public record Task(String name, String template, int maxNewTokens, List<Example> examples, boolean damaged) {
        public Task(String name, String template, int maxNewTokens, List<Example> examples) {
            this(name, template, maxNewTokens, examples, false);
        }
    }

    /** One task's outcome; {@code score} is 100 x the mean, rounded to 2 decimals. */
    public record TaskResult(String task, String metric, int n, double score, long replacedCharacters,
                             List<String> predictions) {
    }

    /**
     * Reads the tasks of a LongBench data directory: {@code dataset2prompt.json}, {@code dataset2maxlen.json} and
     * {@code <task>.jsonl} (also looked for in {@code damaged/}). {@code tasks} empty means every task file present.
     */
    public static List<Task> load(Path dir, List<String> tasks, int limit) {
        Map<String, String> templates = stringMap(dir.resolve("dataset2prompt.json"));
        Map<String, String> maxLens = stringMap(dir.resolve("dataset2maxlen.json"));
        List<String> names = new ArrayList<>(tasks);
        if (names.isEmpty()) {
            for (String t : templates.keySet()) {
                if (file(dir, t) != null) {
                    names.add(t);
                }
            }
        }
        List<Task> out = new ArrayList<>();
        for (String t : names) {
            if (!templates.containsKey(t)) {
                throw KvqException.config("unknown LongBench task '" + t + "'; dataset2prompt.json knows " + templates.keySet());
            }
            Path f = file(dir, t);
            if (f == null) {
                throw new KvqException(ErrorCode.IO, "no " + t + ".jsonl in " + dir + " or " + dir.resolve("damaged"));
            }
            out.add(new Task(t, templates.get(t), Integer.parseInt(maxLens.get(t)), read(f, limit),
                    f.getParent().getFileName().toString().equals("damaged")));
        }
        if (out.isEmpty()) {
            throw KvqException.config(dir + " holds no LongBench task files");
        }
        return out;
    }

    private static Path file(Path dir, String task) {
        for (Path p : List.of(dir.resolve(task + ".jsonl"), dir.resolve("damaged").resolve(task + ".jsonl"))) {
            if (Files.isRegularFile(p)) {
                return p;
            }
        }
        return null;
    }

    private static Map<String, String> stringMap(Path file) {
        try {
            JsonNode n = JSON.readTree(file.toFile());
            Map<String, String> m = new TreeMap<>();
            n.fields().forEachRemaining(e -> m.put(e.getKey(), e.getValue().asText()));
            return m;
        } catch (IOException e) {
            throw KvqException.cannotRead(file, e);
        }
    }

    static List<Example> read(Path file, int limit) {
        List<Example> out = new ArrayList<>();
        try {
            int number = 0;
            for (String line : Files.readAllLines(file)) {
                number++;
                if (line.isBlank()) {
                    continue;
                }
                JsonNode n = JsonLines.object(file, number, line);
                List<String> answers = new ArrayList<>();
                n.path("answers").forEach(a -> answers.add(a.asText()));
                List<String> classes = new ArrayList<>();
                n.path("all_classes").forEach(a -> classes.add(a.asText()));
                out.add(new Example(n.path("input").asText(""), n.path("context").asText(""), answers, classes,
                        n.path("_id").asText("")));
                if (limit > 0 && out.size() >= limit) {
                    break;
                }
            }
        } catch (IOException e) {
            throw KvqException.cannotRead(file, e);
        }
        return out;
    }

    /** The template with {@code {context}} and {@code {input}} substituted. */
    public static String prompt(Task task, Example e) {
        return task.template().replace("{context}", e.context()).replace("{input}", e.input());
    }

    /** LongBench's truncation: over {@code maxLength} tokens, keep the first and the last {@code maxLength/2}. */
    public static String truncate(Tokenizer tokenizer, String prompt, int maxLength) {
        int[] ids = tokenizer.encode(prompt);
        if (ids.length <= maxLength) {
            return prompt;
        }
        int half = maxLength / 2;
        return tokenizer.decode(Arrays.copyOf(ids, half)) + tokenizer.decode(ids, ids.length - half, ids.length);
    }

    /** Post-processing of a prediction before scoring. */
    public static String postprocess(String task, String prediction) {
        if (FIRST_LINE.contains(task)) {
            return prediction.replaceFirst("^\n+", "").split("\n", -1)[0];
        }
        return prediction;
    }

    public static double score(String task, String prediction, Example e) {
        LongBenchMetrics.Metric metric = LongBenchMetrics.forTask(task);
        double best = 0;
        for (String answer : e.answers()) {
            best = Math.max(best, metric.score(postprocess(task, prediction), answer, e.allClasses()));
        }
        return best;
    }

    /**
     * Runs one task. {@code maxLength} of 0 uses the model's positions minus the task's generation length.
     * {@code replaced} reads how many characters a replacing character tokenizer has mapped so far (or null).
     */
    public static TaskResult run(Decoder decoder, Tokenizer tokenizer, CacheFactory caches, Task task, int maxLength,
                                 int batch, java.util.function.LongSupplier replaced, Progress progress) {
        int positions = decoder.config().maxPositions();
        int limit = maxLength > 0 ? maxLength : positions > 0 ? Math.max(16, positions - task.maxNewTokens()) : 3500;
        long before = replaced == null ? 0 : replaced.getAsLong();
        Generator generator = new Generator(decoder, tokenizer, caches);
        List<String> stops = task.name().equals("samsum") ? List.of("\n") : List.of();
        Generator.Options options = new Generator.Options(task.maxNewTokens(), SamplingParams.greedy(), stops);
        List<String> predictions = new ArrayList<>();
        double sum = 0;
        try (Progress.Task t = progress.start(task.name(), task.examples().size())) {
            for (int from = 0; from < task.examples().size(); from += batch) {
                List<Example> part = task.examples().subList(from, Math.min(task.examples().size(), from + batch));
                List<String> prompts = part.stream().map(e -> truncate(tokenizer, prompt(task, e), limit)).toList();
                List<Generator.Result> results = generator.generate(prompts, options, null).results();
                for (int i = 0; i < part.size(); i++) {
                    String p = results.get(i).text();
                    predictions.add(p);
                    sum += score(task.name(), p, part.get(i));
                }
                t.step(part.size());
            }
        }
        double score = Math.round(100 * 100.0 * sum / task.examples().size()) / 100.0;
        return new TaskResult(task.name(), LongBenchMetrics.forTask(task.name()).name().toLowerCase(java.util.Locale.ROOT),
                task.examples().size(), score, replaced == null ? 0 : replaced.getAsLong() - before, predictions);
    }

    /**
     * One task under several configurations, as {@code kvq eval longbench} prints it: in JSON the configurations'
     * scores are fields named after them.
     */
    @JsonPropertyOrder({"task", "metric", "n"})
    public record TaskRow(String task, boolean damaged, String metric, int n, @JsonIgnore Map<String, Double> scores,
                          @JsonProperty("replaced_characters") long replacedCharacters,
                          @JsonProperty("first_prediction") String firstPrediction) {
        @JsonAnyGetter
        public Map<String, Double> scoreFields() {
            return scores;
        }
    }

    /** Every task under every configuration, and each configuration's average score (rounded to 2 decimals). */
    public record Comparison(List<String> configs, List<TaskRow> tasks, Map<String, Double> average) {
    }

    /** Runs every task under every named configuration; the replaced count and first prediction are the first's. */
    public static Comparison compare(Decoder decoder, Tokenizer tokenizer, Map<String, CacheFactory> configs,
                                     List<Task> tasks, int maxLength, int batch,
                                     java.util.function.LongSupplier replaced, Progress progress) {
        Map<String, List<TaskResult>> results = new LinkedHashMap<>();
        for (Map.Entry<String, CacheFactory> run : configs.entrySet()) {
            List<TaskResult> list = new ArrayList<>();
            for (Task task : tasks) {
                list.add(run(decoder, tokenizer, run.getValue(), task, maxLength, batch, replaced, progress));
            }
            results.put(run.getKey(), list);
        }
        List<String> names = List.copyOf(results.keySet());
        List<TaskRow> rows = new ArrayList<>();
        for (int t = 0; t < tasks.size(); t++) {
            TaskResult first = results.get(names.getFirst()).get(t);
            Map<String, Double> scores = new LinkedHashMap<>();
            for (String n : names) {
                scores.put(n, results.get(n).get(t).score());
            }
            rows.add(new TaskRow(first.task(), tasks.get(t).damaged(), first.metric(), first.n(), scores,
                    first.replacedCharacters(),
                    first.predictions().isEmpty() ? null : first.predictions().getFirst()));
        }
        Map<String, Double> averages = new LinkedHashMap<>();
        for (String n : names) {
            averages.put(n, Math.round(100 * results.get(n).stream().mapToDouble(TaskResult::score).average()
                    .orElse(0)) / 100.0);
        }
        return new Comparison(names, rows, averages);
    }
}
