package dev.kvq.cli;

import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.eval.Progress;
import dev.kvq.eval.Report;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.model.ModelDir;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/** What every command that runs a model shares: model, KV options, sweeps, JSON and report output. */
abstract class ModelCommand {
    @Mixin
    ModelOptions model;

    @Mixin
    KvOptions kv;

    @Mixin
    SweepOptions sweep;

    @Option(names = "--json", description = "Print JSON.")
    boolean json;

    @Option(names = "--report", paramLabel = "DIR", description = "Write an HTML report with plots to DIR.")
    Path report;

    @Spec
    CommandSpec spec;

    PrintWriter out() {
        return spec.commandLine().getOut();
    }

    PrintWriter err() {
        return spec.commandLine().getErr();
    }

    Progress progress() {
        return json ? Progress.none() : ConsoleProgress.forConsole();
    }

    /** The configurations to evaluate: the sweep, else the one the KV options describe (or fp with --fp). */
    Map<String, KvQuantConfig> configs() {
        Map<String, KvQuantConfig> out = new LinkedHashMap<>();
        if (sweep.active()) {
            out.putAll(sweep.configs(kv));
        }
        if (sweep.active() || kv.kvConfigs.size() > 1) {
            for (Path file : kv.kvConfigs) {
                out.put(file.getFileName().toString(), kv.resolve(null, kv.keyBits, kv.valueBits, file));
            }
        } else if (!kv.fp) {
            KvQuantConfig c = kv.resolve();
            out.put(describe(c), c);
        }
        return out;
    }

    /** The configuration that decides runtime and device (the first, else the defaults). */
    KvQuantConfig primary() {
        return configs().values().stream().findFirst().orElseGet(() -> kv.resolve());
    }

    /** Each configuration's cache factory, in order. */
    static Map<String, CacheFactory> factories(Map<String, KvQuantConfig> configs, ModelDir dir) {
        Map<String, CacheFactory> out = new LinkedHashMap<>();
        configs.forEach((name, c) -> out.put(name, factory(c, dir)));
        return out;
    }

    static CacheFactory factory(KvQuantConfig c, ModelDir dir) {
        return CacheFactory.quantized(KvCaches.spec(c, dir.config().shape()));
    }

    static String describe(KvQuantConfig c) {
        if (c.perLayerQuant()) {
            return "per-layer " + (c.perLayerConfigPath() == null ? "config" : Path.of(c.perLayerConfigPath())
                    .getFileName());
        }
        if (c.perHeadQuant()) {
            return "per-head " + (c.perHeadConfigPath() == null ? "config" : Path.of(c.perHeadConfigPath()).getFileName());
        }
        int k = c.effectiveKeyBits();
        int v = c.effectiveValueBits();
        return k == v ? "KV" + k : "K" + k + "V" + v;
    }

    void writeReport(Report r) {
        if (report != null) {
            Path page = r.write(report);
            err().println("kvq: report written to " + page);
            err().flush();
        }
    }
}
