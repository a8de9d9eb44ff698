package dev.kvq.cli;

import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Generator;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.SamplingParams;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.spi.Decoder;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Help.Visibility;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/** {@code kvq generate}: text generation through the quantized KV cache. */
@Command(name = "generate", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Generate text with a model whose KV cache is quantized (or full precision with --fp).",
            "Streams the text, then prints a line with tokens/s and the bytes the cache holds."})
final class GenerateCommand implements Callable<Integer>, CheckedCommand {
    @Mixin
    ModelOptions model;

    @Mixin
    KvOptions kv;

    @Option(names = "--prompt", required = true, paramLabel = "TEXT", converter = Checks.NotEmpty.class,
            description = "Prompt; repeat for a batch (left-padded, one cache per sequence).")
    List<String> prompts;

    @Option(names = "--max-new-tokens", defaultValue = "200", paramLabel = "N", converter = Checks.Positive.class,
            description = "Tokens to generate at most; with the prompt, at most the model's positions.")
    int maxNewTokens;

    @Option(names = "--temperature", defaultValue = "0", paramLabel = "T", converter = Checks.Temperature.class,
            description = "Sampling temperature; 0 = greedy.")
    double temperature;

    @Option(names = "--top-k", defaultValue = "0", paramLabel = "K", converter = Checks.NotNegative.class,
            description = "Sample among the K most likely tokens; 0 = off.")
    int topK;

    @Option(names = "--top-p", defaultValue = "1", paramLabel = "P", converter = Checks.TopP.class,
            description = "Sample within probability mass P (more than 0, at most 1); 1 = off.")
    double topP;

    @Option(names = "--seed", defaultValue = "0", paramLabel = "S", description = "Random seed of sampling.")
    long seed;

    @Option(names = "--stop", paramLabel = "STR", showDefaultValue = Visibility.NEVER, converter = Checks.NotEmpty.class,
            description = "Stop a sequence at this string (repeatable; default: none).")
    List<String> stops = new ArrayList<>();

    @Option(names = "--json", description = "Print one JSON object instead of streaming text.")
    boolean json;

    @Spec
    CommandSpec spec;

    /** Prompt and new tokens against the model's positions, and the cache configuration, before any work. */
    @Override
    public Output check() {
        kv.check(false);
        ModelDir dir = model.dir();
        KvQuantConfig config = kv.resolve();
        if (!kv.fp) {
            KvCaches.spec(config, dir.config().shape());
        }
        Runtimes.discover().get(model.runtimeOr(config.runtime()));
        try (Tokenizer tokenizer = model.tokenizer(dir)) {
            int longest = 0;
            for (int i = 0; i < prompts.size(); i++) {
                int n = tokenizer.encode(prompts.get(i)).length;
                Checks.require(n > 0, "--prompt " + (prompts.size() > 1 ? (i + 1) + " " : "") + "is empty after "
                        + "tokenization; give text the model's tokenizer reads");
                longest = Math.max(longest, n);
            }
            Checks.fits(dir, (long) longest + maxNewTokens, "the prompt (" + Checks.tokens(longest) + ") plus --max-new-tokens "
                    + maxNewTokens, "give a --max-new-tokens of at most " + Math.max(0, Checks.positions(dir) - longest)
                    + " or a shorter prompt");
        }
        return null;
    }

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        KvQuantConfig config = kv.resolve();
        ModelDir dir = model.dir();
        CacheFactory caches = kv.caches(config, dir);
        Generator.Options options = new Generator.Options(maxNewTokens, new SamplingParams(temperature, topK, topP, seed),
                stops);
        try (Decoder decoder = model.open(dir, config.runtime(), config.device()); Tokenizer tokenizer = model.tokenizer(dir)) {
            if (!json) {
                err.printf("kvq: %s on %s (%s), cache: %s%n", dir.name(), decoder.device(), model.runtimeOr(config.runtime()),
                        caches.describe());
                err.flush();
            }
            boolean stream = !json && prompts.size() == 1;
            if (stream) {
                out.print(prompts.getFirst());
                out.flush();
            }
            Generator.Output result = new Generator(decoder, tokenizer, caches).generate(prompts, options,
                    stream ? (b, token, delta) -> {
                        out.print(delta);
                        out.flush();
                    } : null);
            Generator.Stats s = result.stats();
            if (json) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("text", result.results().getFirst().text());
                m.put("new_tokens", s.newTokens());
                m.put("kv_bytes", s.kvBytes());
                m.put("kv_bytes_fp16", s.kvBytesFp16());
                m.put("prefill_ms", s.prefillMillis());
                m.put("decode_tokens_per_s", s.decodeTokensPerSecond());
                m.put("stop_reason", result.results().getFirst().stopReason());
                m.put("device", decoder.device());
                m.put("runtime", model.runtimeOr(config.runtime()));
                m.put("cache", caches.describe());
                if (caches.plan() != null) {
                    m.put("avg_k_bits", caches.plan().averageKeyBits());
                    m.put("avg_v_bits", caches.plan().averageValueBits());
                }
                if (prompts.size() > 1) {
                    List<Map<String, Object>> rows = new ArrayList<>();
                    for (Generator.Result r : result.results()) {
                        Map<String, Object> row = new LinkedHashMap<>();
                        row.put("prompt", r.prompt());
                        row.put("text", r.text());
                        row.put("new_tokens", r.tokens().length);
                        row.put("stop_reason", r.stopReason());
                        rows.add(row);
                    }
                    m.put("results", rows);
                }
                out.println(Json.write(m));
            } else {
                if (stream) {
                    out.println();
                } else {
                    for (Generator.Result r : result.results()) {
                        out.println("--- " + r.prompt().replace("\n", "\\n"));
                        out.println(r.prompt() + r.text());
                    }
                }
                out.printf("%d new tokens; prefill %.1f ms; decode %.1f tokens/s; KV cache %,d bytes (float16: %,d bytes, "
                        + "%.2fx)%n", s.newTokens(), s.prefillMillis(), s.decodeTokensPerSecond(), s.kvBytes(),
                        s.kvBytesFp16(), s.kvBytes() == 0 ? 0 : s.kvBytesFp16() / (double) s.kvBytes());
            }
            out.flush();
            if (!kv.fp && config.residualLength() > 0 && s.kvBytes() > s.kvBytesFp16()) {
                err.printf("kvq: note: the cache holds more than float16 would: it keeps the last tokens of each sequence "
                        + "in a float32 residual window of %d tokens (residual_length), allocated up front, which on a run "
                        + "this short outweighs the quantized tokens; longer contexts amortize it, and --scheme pertoken "
                        + "or --residual-length 0 quantizes every token at once%n", config.residualLength());
                err.flush();
            }
        }
        return 0;
    }
}
