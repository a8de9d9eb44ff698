package dev.kvq.eval;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.annotation.JsonPropertyOrder;
import com.fasterxml.jackson.databind.JsonNode;
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
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * GSM8K as KVTuner evaluates it: the first N training examples as demonstrations, each
 * {@code "Question: " + q + "\nAnswer: " + full answer + ".\n\n"}, then {@code "Question: " + q + "\nAnswer:"}; greedy
 * generation of up to 256 new tokens, stopping at the next {@code "Question:"}; the predicted answer is the first
 * number after {@code "####"} when present, else the last number (commas removed, a trailing period dropped); exact
 * match with the number after {@code ####} in the reference answer.
 */
public final class Gsm8k {
    private static final Pattern NUMBER = Pattern.compile("-?[0-9][0-9,]*(\\.[0-9]+)?");

    private Gsm8k() {
    }

    /** One problem. */
    public record Example(String question, String answer) {
    }

    /** One scored problem. */
    public record Outcome(String question, String completion, String predicted, String expected, boolean correct) {
    }

    /** Accuracy over the problems. */
    public record Result(int n, int correct, List<Outcome> outcomes) {
        public double accuracy() {
            return n == 0 ? 0 : correct / (double) n;
        }
    }

    public static List<Example> read(Path jsonl, int limit) {
        List<Example> out = new ArrayList<>();
        try {
            int line = 0;
            for (String s : Files.readAllLines(jsonl)) {
                line++;
                if (s.isBlank()) {
                    continue;
                }
                JsonNode n = JsonLines.object(jsonl, line, s);
                if (!n.hasNonNull("question") || !n.hasNonNull("answer")) {
                    throw new KvqException(ErrorCode.CORRUPT_DATA, jsonl + " line " + line + " lacks question or answer");
                }
                out.add(new Example(n.get("question").asText(), n.get("answer").asText()));
                if (limit > 0 && out.size() >= limit) {
                    break;
                }
            }
        } catch (IOException e) {
            throw KvqException.cannotRead(jsonl, e);
        }
        return out;
    }

    public static String prompt(List<Example> shots, String question) {
        StringBuilder sb = new StringBuilder();
        for (Example e : shots) {
            sb.append("Question: ").append(e.question()).append("\nAnswer: ").append(e.answer()).append(".\n\n");
        }
        return sb.append("Question: ").append(question).append("\nAnswer:").toString();
    }

    /** The predicted answer of a completion, or null when it holds no number. */
    public static String extract(String completion) {
        int marker = completion.indexOf("####");
        if (marker >= 0) {
            Matcher m = NUMBER.matcher(completion.substring(marker + 4));
            if (m.find()) {
                return normalize(m.group());
            }
        }
        Matcher m = NUMBER.matcher(completion);
        String last = null;
        while (m.find()) {
            last = m.group();
        }
        return last == null ? null : normalize(last);
    }

    /** The number after {@code ####} of a reference answer. */
    public static String reference(String answer) {
        int marker = answer.lastIndexOf("####");
        if (marker < 0) {
            throw new KvqException(ErrorCode.CORRUPT_DATA, "a GSM8K answer lacks '####': " + answer);
        }
        Matcher m = NUMBER.matcher(answer.substring(marker + 4));
        if (!m.find()) {
            throw new KvqException(ErrorCode.CORRUPT_DATA, "no number after '####' in: " + answer);
        }
        return normalize(m.group());
    }

    static String normalize(String number) {
        String s = number.replace(",", "");
        if (s.endsWith(".")) {
            s = s.substring(0, s.length() - 1);
        }
        return s;
    }

    /** One configuration's line of {@code kvq eval gsm8k} (JSON field names as the command prints them). */
    @JsonPropertyOrder({"config", "accuracy", "correct", "n", "avg_bits", "first_completion"})
    public record Row(String config, double accuracy, int correct, int n, @JsonProperty("avg_bits") Double avgBits,
                      @JsonProperty("first_completion") String firstCompletion) {
    }

    /** Every named configuration (a null plan: full precision) on the same problems. */
    public static List<Row> sweep(Decoder decoder, Tokenizer tokenizer, Map<String, CacheFactory> configs,
                                  List<Example> shots, List<Example> problems, int maxNewTokens, int batch,
                                  Progress progress) {
        List<Row> rows = new ArrayList<>();
        for (Map.Entry<String, CacheFactory> e : configs.entrySet()) {
            Result r = run(decoder, tokenizer, e.getValue(), shots, problems, maxNewTokens, batch, progress);
            rows.add(new Row(e.getKey(), r.accuracy(), r.correct(), r.n(), e.getValue().plan() == null ? null
                    : e.getValue().plan().averageBits(), r.outcomes().isEmpty() ? null
                    : r.outcomes().getFirst().completion()));
        }
        return rows;
    }

    public static Result run(Decoder decoder, Tokenizer tokenizer, CacheFactory caches, List<Example> shots,
                             List<Example> tests, int maxNewTokens, int batch, Progress progress) {
        Generator generator = new Generator(decoder, tokenizer, caches);
        Generator.Options options = new Generator.Options(maxNewTokens, SamplingParams.greedy(), List.of("Question:"));
        List<Outcome> outcomes = new ArrayList<>();
        int correct = 0;
        try (Progress.Task task = progress.start("gsm8k", tests.size())) {
            for (int from = 0; from < tests.size(); from += batch) {
                List<Example> part = tests.subList(from, Math.min(tests.size(), from + batch));
                List<String> prompts = part.stream().map(e -> prompt(shots, e.question())).toList();
                List<Generator.Result> results = generator.generate(prompts, options, null).results();
                for (int i = 0; i < part.size(); i++) {
                    String completion = results.get(i).text();
                    String predicted = extract(completion);
                    String expected = reference(part.get(i).answer());
                    boolean ok = expected.equals(predicted);
                    correct += ok ? 1 : 0;
                    outcomes.add(new Outcome(part.get(i).question(), completion, predicted, expected, ok));
                }
                task.step(part.size());
            }
        }
        return new Result(outcomes.size(), correct, outcomes);
    }
}
