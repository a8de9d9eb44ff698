package dev.kvq.cli;

import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.eval.Progress;
import dev.kvq.eval.Report;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.model.ModelDir;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/**
 * What every command that runs a model shares: model, KV options, sweeps, JSON and report output, and the checks of
 * all of them before any work.
 */
abstract class ModelCommand implements CheckedCommand {
    @Mixin
    ModelOptions model;

    @Mixin
    KvOptions kv;

    @Mixin
    SweepOptions sweep;

    @Option(names = "--json", description = "Print JSON.")
    boolean json;

    @Option(names = "--report", paramLabel = "DIR", description = "Write an HTML report with plots to DIR (index.html "
            + "and PNG files); a DIR that holds a report already is refused unless --force.")
    Path report;

    @Option(names = "--force", description = "Replace the report of an earlier run in --report DIR.")
    boolean force;

    /** The report directory, claimed by {@link #check()}. */
    private Output reportOutput;

    @Spec
    CommandSpec spec;

    PrintWriter out() {
        return spec.commandLine().getOut();
    }

    PrintWriter err() {
        return spec.commandLine().getErr();
    }

    Progress progress() {
        return ConsoleProgress.forConsole(err(), json);
    }

    /**
     * The options against each other, every configuration resolved against the model, the command's own options
     * ({@link #checkModel}), then the report directory claimed: all before any work.
     */
    @Override
    public Output check() {
        kv.check(true);
        sweep.check(kv);
        ModelDir dir = model.dir();
        Map<String, KvQuantConfig> all = configs();
        for (KvQuantConfig c : all.values()) {
            factory(c, dir);
        }
        KvQuantConfig primary = primary();
        Runtimes.discover().get(model.runtimeOr(primary.runtime()));
        checkModel(dir);
        reportOutput = report == null ? null : Output.directory("--report", report, force, "index.html", "*.png");
        return reportOutput;
    }

    /** The command's own options, against each other and the model; runs before any work. */
    void checkModel(ModelDir dir) {
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
            r.write(reportOutput.staging());
            reportOutput.publish();
            err().println("kvq: report written to " + report.resolve("index.html"));
            err().flush();
        }
    }
}
