package dev.kvq.cli;

import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.Placement;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.serve.LoadBench;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/** {@code kvq serve-bench}: kvq serve under load, the full-precision cache beside quantized ones at one budget. */
@Command(name = "serve-bench", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Load benchmark of kvq serve: for the full-precision cache and each configuration, a server with "
            + "the same --kv-memory, driven over HTTP by closed-loop streaming clients at each --concurrency. Prints "
            + "tokens/s, the sequences the budget admits and the most that ran at once, and p50/p90/p99 of the time to "
            + "first token and of the request latency."})
final class ServeBenchCommand implements Callable<Integer>, CheckedCommand {
    @Mixin
    ModelOptions model;

    @Mixin
    KvOptions kv;

    @Option(names = "--kv-memory", required = true, paramLabel = "SIZE",
            description = "The budget every server gets (e.g. 4MiB, 8GiB).")
    String kvMemory;

    @Option(names = "--concurrency", split = ",", defaultValue = "1,4,16,32", paramLabel = "N,N,...",
            converter = Checks.Positive.class, description = "Clients at once, a row each.")
    List<Integer> concurrency;

    @Option(names = "--requests-per-client", defaultValue = "4", paramLabel = "N", converter = Checks.Positive.class,
            description = "Requests each client sends, one after the other.")
    int requestsPerClient;

    @Option(names = "--prompt-tokens", defaultValue = "64", paramLabel = "N", converter = Checks.Positive.class,
            description = "Tokens of every prompt.")
    int promptTokens;

    @Option(names = "--max-tokens", defaultValue = "128", paramLabel = "N", converter = Checks.Positive.class,
            description = "New tokens every request asks for (greedy).")
    int maxTokens;

    @Option(names = "--max-batch", defaultValue = "256", paramLabel = "N", converter = Checks.Positive.class,
            description = "The servers' --max-batch.")
    int maxBatch;

    @Option(names = "--data", paramLabel = "FILE", description = "Text the prompts are taken from (default: the "
            + "model directory's sample.txt).")
    Path data;

    @Option(names = "--json", description = "Print JSON.")
    boolean json;

    @Spec
    CommandSpec spec;

    @Override
    public Output check() {
        kv.check(true);
        Checks.require(!kv.fp, "kvq serve-bench always runs the full-precision cache beside the configurations; drop "
                + "--fp");
        ModelDir dir = model.dir();
        Map<String, CacheFactory> configs = configs(dir);
        Runtimes.discover().get(model.runtimeOr(primary().runtime()));
        Checks.fits(dir, (long) promptTokens + maxTokens, "--prompt-tokens " + promptTokens + " plus --max-tokens "
                + maxTokens, "give at most " + Math.max(0, Checks.positions(dir) - promptTokens) + " --max-tokens");
        long budget = Sizes.parse("--kv-memory", kvMemory);
        configs.forEach((name, caches) -> {
            long one = caches.bytesHeldAfter(dir.config().shape(), promptTokens, maxTokens - 1, 0);
            Checks.require(one <= budget, "--kv-memory " + kvMemory + " (" + budget + " bytes) holds no request under "
                    + name + ": one of " + promptTokens + " + " + maxTokens + " tokens reserves " + one + " bytes; "
                    + "give more");
        });
        Checks.inputFile(data == null ? "the model's sample.txt (or --data)" : "--data", text(dir));
        return null;
    }

    private KvQuantConfig primary() {
        return kv.resolve(null, kv.keyBits, kv.valueBits, kv.kvConfigs.isEmpty() ? null : kv.kvConfigs.getFirst());
    }

    /** The full-precision cache, then each configuration (each --kv-config, else the flags'). */
    private Map<String, CacheFactory> configs(ModelDir dir) {
        Map<String, CacheFactory> out = new LinkedHashMap<>();
        List<KvQuantConfig> configs = new ArrayList<>();
        if (kv.kvConfigs.isEmpty()) {
            configs.add(kv.resolve());
        } else {
            for (Path file : kv.kvConfigs) {
                configs.add(kv.resolve(null, kv.keyBits, kv.valueBits, file));
            }
        }
        Placement placement = configs.getFirst().placement();
        // the baseline lives where the configurations do: on the device it is held in the model's K/V dtype
        out.put(placement == Placement.DEVICE ? "full precision" : "fp32",
                CacheFactory.fullPrecision(dir.config().shape(), placement));
        for (KvQuantConfig c : configs) {
            Checks.require(c.placement() == placement, "kvq serve-bench runs every configuration with one placement, "
                    + "and " + ModelCommand.describe(c) + " has placement " + c.placement().name().toLowerCase()
                    + " where the first has " + placement.name().toLowerCase() + "; give them one placement");
            out.put(ModelCommand.describe(c) + " " + c.backend(), ModelCommand.factory(c, dir));
        }
        return out;
    }

    private static Map<String, Double> percentiles(double p50, double p90, double p99) {
        Map<String, Double> m = new LinkedHashMap<>();
        m.put("p50", p50);
        m.put("p90", p90);
        m.put("p99", p99);
        return m;
    }

    private Path text(ModelDir dir) {
        return data != null ? data : dir.root().resolve("sample.txt");
    }

    @Override
    public Integer call() throws Exception {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        ModelDir dir = model.dir();
        KvQuantConfig primary = primary();
        Map<String, CacheFactory> configs = configs(dir);
        long budget = Sizes.parse("--kv-memory", kvMemory);
        String text = Files.readString(text(dir));
        List<LoadBench.Row> rows;
        String device;
        try (Decoder decoder = model.open(dir, primary.runtime(), primary.device());
             Tokenizer tokenizer = model.tokenizer(dir)) {
            device = decoder.device();
            rows = LoadBench.run(decoder, tokenizer, configs, text, new LoadBench.Options(budget, concurrency,
                    requestsPerClient, promptTokens, maxTokens, maxBatch), r -> {
                        err.printf("kvq: %s, %d clients: %.0f tokens/s%n", r.cache(), r.concurrency(),
                                r.tokensPerSecond());
                        err.flush();
                    });
        }
        String runtime = model.runtimeOr(primary.runtime());
        if (json) {
            Map<String, Object> doc = new LinkedHashMap<>();
            doc.put("model", dir.name());
            doc.put("runtime", runtime);
            doc.put("device", device);
            doc.put("kv_memory_bytes", budget);
            doc.put("prompt_tokens", promptTokens);
            doc.put("max_tokens", maxTokens);
            doc.put("requests_per_client", requestsPerClient);
            List<Map<String, Object>> list = new ArrayList<>();
            for (LoadBench.Row r : rows) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("cache", r.cache());
                m.put("concurrency", r.concurrency());
                m.put("requests", r.requests());
                m.put("reservation_bytes", r.reservationBytes());
                m.put("capacity_sequences", r.capacity());
                m.put("peak_sequences", r.peakSequences());
                m.put("tokens", r.tokens());
                m.put("seconds", r.seconds());
                m.put("tokens_per_second", r.tokensPerSecond());
                m.put("ttft_ms", percentiles(r.ttftP50(), r.ttftP90(), r.ttftP99()));
                m.put("latency_ms", percentiles(r.latencyP50(), r.latencyP90(), r.latencyP99()));
                list.add(m);
            }
            doc.put("rows", list);
            out.println(Json.write(doc));
        } else {
            out.printf("kvq serve-bench: %s on %s (%s), --kv-memory %,d bytes, prompts of %d tokens, %d new tokens, "
                    + "%d requests per client%n", dir.name(), device, runtime, budget, promptTokens, maxTokens,
                    requestsPerClient);
            out.printf("%-14s %7s %8s %14s %8s %6s %10s   %-26s %s%n", "cache", "clients", "requests", "reserve/req",
                    "capacity", "peak", "tokens/s", "TTFT ms p50/p90/p99", "latency ms p50/p90/p99");
            for (LoadBench.Row r : rows) {
                out.printf("%-14s %7d %8d %,14d %8d %6d %10.1f   %-26s %s%n", r.cache(), r.concurrency(), r.requests(),
                        r.reservationBytes(), r.capacity(), r.peakSequences(), r.tokensPerSecond(),
                        String.format("%.1f / %.1f / %.1f", r.ttftP50(), r.ttftP90(), r.ttftP99()),
                        String.format("%.1f / %.1f / %.1f", r.latencyP50(), r.latencyP90(), r.latencyP99()));
            }
        }
        out.flush();
        return 0;
    }
}
