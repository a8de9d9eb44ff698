package dev.kvq.cli;

import dev.kvq.KvqException;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.eval.Bench;
import dev.kvq.eval.Report;
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
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code kvq bench}: prefill time, decode speed and memory per context length and configuration. */
@Command(name = "bench", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Prefill ms, decode tokens/s, bytes held and bytes per token for each context length and cache "
            + "configuration, beside the full-precision cache, measured in one run (best of --repeats after a warm-up)."})
final class BenchCommand extends ModelCommand implements Callable<Integer> {
    @Option(names = "--contexts", split = ",", defaultValue = "256,512,1024", paramLabel = "N,N,...",
            converter = Checks.Positive.class, description = "Context lengths; with --decode-steps, at most the model's "
                + "positions.")
    List<Integer> contexts;

    @Option(names = "--decode-steps", defaultValue = "64", paramLabel = "N", converter = Checks.Positive.class,
            description = "Decode steps timed per run.")
    int decodeSteps;

    @Option(names = "--warmup-steps", defaultValue = "32", paramLabel = "N", converter = Checks.NotNegative.class,
            description = "Untimed decode steps before the timed ones in every run (default ${DEFAULT-VALUE}): the JVM "
                + "compiles a step's host code after some tens of steps, and the timed steps run the compiled code.")
    int warmupSteps;

    @Option(names = "--repeats", defaultValue = "2", paramLabel = "N", converter = Checks.NotNegative.class,
            description = "Timed runs per row after one warm-up run; the fastest is kept (0: one run, no warm-up).")
    int repeats;

    @Option(names = "--prefill-chunk", defaultValue = "0", paramLabel = "N", description = "Prefill prompts in "
            + "chunks of N tokens, each attending to the cache of the ones before (0: the whole prompt at once).")
    int prefillChunk;

    @Option(names = "--batch", split = ",", defaultValue = "1", paramLabel = "N,N,...",
            description = "Sequences decoded together (default ${DEFAULT-VALUE}); each is prefilled alone.")
    List<Integer> batches;

    @Option(names = "--kv-memory", paramLabel = "SIZE", description = "Capacity mode: for each configuration, the "
            + "largest batch whose caches (at the context plus the warm-up and decode steps) fit SIZE (e.g. 8GiB, "
            + "512MiB), and its decode speed: the paper's maximum throughput. Takes one context.")
    String kvMemory;

    @Option(names = "--max-batch", defaultValue = "1024", paramLabel = "N",
            description = "Capacity mode: never decode more sequences at once than this (default ${DEFAULT-VALUE}).")
    int maxBatch;

    @Option(names = "--data", paramLabel = "FILE", description = "Text whose first tokens form the prompts (default: "
            + "random vocabulary tokens, seed 0).")
    Path data;

    @Override
    void checkModel(ModelDir dir) {
        int max = contexts.stream().mapToInt(Integer::intValue).max().orElseThrow();
        int steps = warmupSteps + decodeSteps;
        Checks.fits(dir, (long) max + steps, "--contexts " + max + " plus --warmup-steps " + warmupSteps
                + " plus --decode-steps " + decodeSteps, "give contexts of at most "
                + Math.max(0, Checks.positions(dir) - steps) + " tokens");
        if (data != null) {
            Checks.inputFile("--data", data);
        }
    }

    @Override
    public Integer call() {
        ModelDir dir = model.dir();
        KvQuantConfig primary = primary();
        int max = contexts.stream().mapToInt(Integer::intValue).max().orElseThrow();
        List<Bench.Row> rows;
        String device;
        try (Decoder decoder = model.open(dir, primary.runtime(), primary.device());
             Tokenizer tokenizer = model.tokenizer(dir)) {
            device = decoder.device();
            int[] tokens = tokens(tokenizer, dir.config().vocabSize(), max);
            Map<String, CacheFactory> runs = new LinkedHashMap<>();
            boolean onDevice = primary.placement() == dev.kvq.config.Placement.DEVICE;
            runs.put(onDevice ? "full precision" : "fp32", CacheFactory.fullPrecision(dir.config().shape(),
                    primary.placement()));
            configs().forEach((name, c) -> runs.put(name, factory(c, dir)));
            if (kvMemory != null) {
                if (contexts.size() != 1) {
                    throw KvqException.config("--kv-memory measures one context; give one in --contexts, was "
                            + contexts);
                }
                rows = Bench.capacity(decoder, runs, contexts.getFirst(), tokens, warmupSteps, decodeSteps, repeats,
                        Sizes.parse("--kv-memory", kvMemory), maxBatch, prefillChunk, progress());
            } else {
                rows = new ArrayList<>();
                for (int batch : batches) {
                    if (batch < 1) {
                        throw KvqException.config("--batch must be at least 1, was " + batch);
                    }
                    rows.addAll(Bench.run(decoder, runs, contexts.stream().mapToInt(Integer::intValue).toArray(),
                            tokens, warmupSteps, decodeSteps, repeats, batch, prefillChunk, progress()));
                }
            }
        }
        PrintWriter out = out();
        if (json) {
            Map<String, Object> doc = new LinkedHashMap<>();
            doc.put("model", dir.name());
            doc.put("device", device);
            doc.put("runtime", model.runtimeOr(primary.runtime()));
            doc.put("warmup_steps", warmupSteps);
            doc.put("decode_steps", decodeSteps);
            if (kvMemory != null) {
                doc.put("kv_memory_bytes", Sizes.parse("--kv-memory", kvMemory));
            }
            doc.put("results", rows);
            out.println(Json.write(doc));
        } else {
            out.printf("%s on %s (%s), %d decode steps after %d untimed, best of %d%n", dir.name(), device,
                    model.runtimeOr(primary.runtime()), decodeSteps, warmupSteps, repeats);
            out.printf("%-22s %-9s %5s %7s %9s %11s %12s %14s %14s %14s   %s%n", "config", "placement", "batch",
                    "context", "avg bits", "prefill ms", "decode tok/s", "KV bytes", "device bytes", "moved/step",
                    "per step: materialize / forward / append ms");
            for (Bench.Row r : rows) {
                out.printf("%-22s %-9s %5d %7d %9s %11.1f %12.1f %,14d %,14d %,14.0f   %.3f / %.3f / %.3f%n",
                        r.config(), r.placement().id(), r.batch(), r.context(),
                        r.avgBits() == null ? "32" : String.format("%.2f", r.avgBits()), r.prefillMillis(),
                        r.decodeTokensPerSecond(), r.bytesHeld(), r.deviceBytes(), r.transferBytesPerStep(),
                        r.materializeMillisPerStep(), r.forwardMillisPerStep(), r.appendMillisPerStep());
            }
        }
        out.flush();
        if (report != null) {
            Report rep = new Report("kvq bench: " + dir.name() + " on " + device);
            List<List<Object>> table = new ArrayList<>();
            Map<String, List<double[]>> bytes = new LinkedHashMap<>();
            Map<String, List<double[]>> speed = new LinkedHashMap<>();
            for (Bench.Row r : rows) {
                table.add(List.of(r.config(), r.context(), r.avgBits() == null ? 32.0 : r.avgBits(), r.prefillMillis(),
                        r.decodeTokensPerSecond(), r.bytesHeld(), r.bytesPerToken()));
                bytes.computeIfAbsent(r.config(), k -> new ArrayList<>()).add(new double[] {r.context(), r.bytesPerToken()});
                speed.computeIfAbsent(r.config(), k -> new ArrayList<>())
                        .add(new double[] {r.context(), r.decodeTokensPerSecond()});
            }
            rep.table(List.of("config", "context", "avg bits", "prefill ms", "decode tok/s", "KV bytes", "bytes/token"),
                    table);
            rep.chart("bytes_per_token.png", "KV bytes per token against context length", "context (tokens)",
                    "bytes per token", bytes, true);
            rep.chart("decode_speed.png", "Decode speed against context length", "context (tokens)", "tokens/s", speed,
                    true);
            writeReport(rep);
        }
        return 0;
    }

    private int[] tokens(Tokenizer tokenizer, int vocab, int count) {
        int[] ids;
        if (data != null) {
            ids = tokenizer.encode(EvalCommand.readText(data));
            if (ids.length < count) {
                throw KvqException.config(data + " gives " + ids.length + " tokens, the largest context needs " + count);
            }
        } else {
            SplittableRandom rnd = new SplittableRandom(0);
            ids = rnd.ints(count, 0, vocab).toArray();
        }
        return ids;
    }
}
