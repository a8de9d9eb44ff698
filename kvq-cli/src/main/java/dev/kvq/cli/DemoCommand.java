package dev.kvq.cli;

import dev.kvq.KvqException;
import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.eval.CacheComparison;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.spi.RuntimeOptions;
import dev.kvq.io.config.ConfigFiles;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/** {@code kvq demo}: kvq's own small model, three caches, one table. Offline. */
@Command(name = "demo", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Generate from a fixed prompt with kvq's demo model three ways (full-precision cache, uniform "
            + "KV4, and the mixed per-layer config shipped beside the model) and compare memory, agreement and speed.",
            "Needs no network and no data outside the repository."})
final class DemoCommand implements Callable<Integer>, CheckedCommand {
    static final String PROMPT = "ROMEO:\nBut soft, what light through yonder window breaks?\n";

    @Option(names = "--model", paramLabel = "DIR", description = "Model directory (default: the demo model, "
            + "models/kvq-demo-char).")
    Path model;

    @Option(names = "--max-new-tokens", defaultValue = "400", paramLabel = "N", converter = Checks.Positive.class,
            description = "Characters to generate; with the prompt, at most the model's positions.")
    int maxNewTokens;

    @Option(names = "--prompt", paramLabel = "TEXT", converter = Checks.NotEmpty.class,
            showDefaultValue = CommandLine.Help.Visibility.NEVER,
            description = "Prompt (default: a line of Romeo and Juliet).")
    String prompt = PROMPT;

    @Option(names = "--device", defaultValue = "cpu", paramLabel = "cpu|cuda", converter = Checks.Device.class,
            description = "Device: cpu, cuda or cuda:N.")
    String device;

    @Spec
    CommandSpec spec;

    /** The model, and the prompt plus new tokens against its positions, before any work. */
    @Override
    public Output check() {
        ModelDir dir = ModelDir.open(model != null ? model : defaultModel());
        try (Tokenizer tokenizer = Tokenizers.load(dir)) {
            int n = tokenizer.encode(prompt).length;
            Checks.fits(dir, (long) n + maxNewTokens, "the prompt (" + Checks.tokens(n) + ") plus --max-new-tokens "
                    + maxNewTokens, "give a --max-new-tokens of at most " + Math.max(0, Checks.positions(dir) - n));
        }
        return null;
    }

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        ModelDir dir = ModelDir.open(model != null ? model : defaultModel());
        Map<String, CacheFactory> caches = new LinkedHashMap<>();
        caches.put("full precision", CacheFactory.fullPrecision(dir.config().shape()));
        caches.put("KV4 (per-token)", CacheFactory.quantized(KvCaches.spec(KvQuantConfig.perToken(4, 4).build(),
                dir.config().shape())));
        Path mixed = dir.root().resolve("kv-mixed.yaml");
        if (Files.isRegularFile(mixed)) {
            KvQuantConfig c = ConfigFiles.load(mixed, KvQuantConfig.perToken(4, 4).build());
            caches.put("mixed (kv-mixed.yaml)", CacheFactory.quantized(KvCaches.spec(c, dir.config().shape())));
        }
        List<CacheComparison.Row> rows;
        String runtimeName;
        // one intra-op thread: the demo model is too small for ONNX Runtime's thread pool to pay, and on a 2-core
        // machine its spinning workers made decode twice as slow and erratic
        try (Decoder decoder = Runtimes.discover().get("onnx").open(dir, new RuntimeOptions(device, 1));
                Tokenizer tokenizer = Tokenizers.load(dir)) {
            runtimeName = "ONNX Runtime on " + decoder.device();
            rows = CacheComparison.run(decoder, tokenizer, caches, prompt, maxNewTokens, 2);
        }
        out.printf("kvq demo: %s (%d layers, %d KV heads x %d, %,d-token context), %s%n", dir.name(),
                dir.config().layers(), dir.config().kvHeads(), dir.config().headDim(), rows.getFirst().tokensHeld(),
                runtimeName);
        out.printf("prompt %s, %d new characters, greedy%n%n", quote(prompt), maxNewTokens);
        out.printf("%-22s %9s %10s %9s %10s %10s %12s %9s%n", "cache", "avg bits", "KV bytes", "bytes/tok", "vs fp16",
                "same text", "top-1 agree", "tokens/s");
        for (CacheComparison.Row r : rows) {
            String bits = r.avgBits() == null ? "32 (fp32)" : String.format("%.2f", r.avgBits());
            out.printf("%-22s %9s %,10d %9.1f %9.2fx %9.1f%% %11.1f%% %9.0f%n", r.name(), bits, r.kvBytes(),
                    r.bytesPerToken(), r.vsFp16(), 100 * r.sameText(), 100 * r.top1Agreement(),
                    r.decodeTokensPerSecond());
        }
        out.println();
        out.println("full-precision continuation:");
        out.println(indent(rows.getFirst().text().substring(0, Math.min(240, rows.getFirst().text().length()))));
        for (CacheComparison.Row r : rows.subList(1, rows.size())) {
            out.printf("%s: %s%n", r.name(), r.firstDifference() < 0 ? "identical"
                    : "first differs at character " + r.firstDifference());
        }
        out.println();
        out.println("same text: characters equal to the full-precision continuation at the same position; top-1 agree:");
        out.println("share of positions where the cache's next-token choice equals full precision's on the same text;");
        out.println("vs fp16: how many times smaller than a float16 cache of the same tokens (fp32 holds twice fp16).");
        out.flush();
        return 0;
    }

    static Path defaultModel() {
        String home = System.getProperty("kvq.home");
        Path base = home != null ? Path.of(home) : Path.of("");
        Path p = base.resolve("models").resolve("kvq-demo-char");
        if (!Files.isDirectory(p)) {
            throw new KvqException(dev.kvq.ErrorCode.MODEL_INVALID, "the demo model is not at " + p.toAbsolutePath()
                    + "; run kvq from the repository (./kvq demo) or pass --model DIR");
        }
        return p;
    }

    private static String quote(String s) {
        return "\"" + s.replace("\n", "\\n") + "\"";
    }

    private static String indent(String s) {
        return "  " + s.replace("\n", "\n  ");
    }
}
