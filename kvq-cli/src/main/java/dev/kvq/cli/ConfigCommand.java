package dev.kvq.cli;

import dev.kvq.KvqException;
import dev.kvq.cache.quantized.CacheSpec;
import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.LayerPlan;
import dev.kvq.config.ModelShape;
import dev.kvq.config.PrecisionPlan;
import dev.kvq.io.config.ConfigFiles;
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
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/** {@code kvq config}: configuration tools. */
@Command(name = "config", mixinStandardHelpOptions = true, description = "Check KV-cache configurations.",
        subcommands = {ConfigCommand.Check.class})
final class ConfigCommand {

    /** {@code kvq config check FILE --layers N}: the effective plan, or the validation error (exit 2). */
    @Command(name = "check", mixinStandardHelpOptions = true,
            description = {"Validate a kvq configuration or a KVTuner per-layer/per-head file against a model's "
                    + "geometry and the backend's capabilities, and print the effective per-layer (per-head) plan "
                    + "with the average key and value bits.", "Exit code 2 with a message when it is invalid."})
    static final class Check implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "FILE", description = "Configuration (JSON/YAML) or KVTuner precision file.")
        Path file;

        @Option(names = "--layers", required = true, paramLabel = "N", converter = Checks.Positive.class,
                showDefaultValue = Visibility.NEVER,
                description = "Decoder layers of the model.")
        int layers;

        @Option(names = "--kv-heads", paramLabel = "H", converter = Checks.Positive.class,
                description = "KV heads per layer (default: the per-head file's head count, else 1).")
        Integer kvHeads;

        @Option(names = "--head-dim", paramLabel = "D", defaultValue = "128", converter = Checks.Positive.class,
                description = "Head dimension, for group-size checks.")
        int headDim;

        @Option(names = "--backend", paramLabel = "NAME", description = "Check against this backend instead of the file's.")
        String backend;

        @Option(names = "--json", description = "Print the plan (or the error) as JSON.")
        boolean json;

        @Spec
        CommandSpec spec;

        @Override
        public Integer call() {
            PrintWriter out = spec.commandLine().getOut();
            try {
                KvQuantConfig config = ConfigFiles.load(file);
                if (backend != null) {
                    config = config.toBuilder().backend(backend).build();
                }
                int heads = kvHeads != null ? kvHeads
                        : config.perHeadQuant() ? config.perHeadConfig().values().iterator().next().size() : 1;
                CacheSpec cacheSpec = KvCaches.spec(config, new ModelShape(layers, heads, headDim));
                print(out, config, cacheSpec.plan(), kvHeads != null || config.perHeadQuant());
                return 0;
            } catch (KvqException e) {
                if (json) {
                    Map<String, Object> m = new LinkedHashMap<>();
                    m.put("file", file.toString());
                    m.put("valid", false);
                    m.put("error", e.getMessage());
                    out.println(Json.write(m));
                    out.flush();
                }
                throw e;
            }
        }

        private void print(PrintWriter out, KvQuantConfig c, PrecisionPlan plan, boolean headsKnown) {
            ConfigFiles.Kind kind = ConfigFiles.kindOf(file);
            if (json) {
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("file", file.toString());
                m.put("valid", true);
                m.put("kind", kind.name().toLowerCase(java.util.Locale.ROOT).replace('_', '-'));
                m.put("backend", c.backend());
                m.put("policy", c.policy().id());
                m.put("axis_key", c.axisKey());
                m.put("axis_value", c.axisValue());
                m.put("q_group_size", c.groupSize());
                m.put("residual_length", c.residualLength());
                m.put("asym", c.asym());
                m.put("layers", plan.shape().layers());
                m.put("kv_heads", headsKnown ? plan.shape().kvHeads() : null);
                m.put("head_dim", plan.shape().headDim());
                List<Map<String, Object>> rows = new ArrayList<>();
                for (LayerPlan l : plan.layers()) {
                    Map<String, Object> r = new LinkedHashMap<>();
                    r.put("layer", l.layer());
                    if (c.perHeadQuant()) {
                        r.put("key_bits", l.keyBits());
                        r.put("value_bits", l.valueBits());
                    } else {
                        r.put("key_bits", l.keyBits(0));
                        r.put("value_bits", l.valueBits(0));
                    }
                    rows.add(r);
                }
                m.put("plan", rows);
                m.put("avg_key_bits", plan.averageKeyBits());
                m.put("avg_value_bits", plan.averageValueBits());
                m.put("avg_bits", plan.averageBits());
                out.println(Json.write(m));
            } else {
                out.printf("%s: %s%n", file, switch (kind) {
                    case CONFIG -> "kvq configuration";
                    case PER_LAYER -> "KVTuner per-layer file";
                    case PER_HEAD -> "KVTuner per-head file";
                });
                out.printf("backend %s, policy %s, axes key %d / value %d, group %d, residual %d, %s%n", c.backend(),
                        c.policy().id(), c.axisKey(), c.axisValue(), c.groupSize(), c.residualLength(),
                        c.asym() ? "asymmetric" : "symmetric");
                out.printf("model: %d layers, %s KV heads, head_dim %d%n", plan.shape().layers(),
                        headsKnown ? String.valueOf(plan.shape().kvHeads()) : "(any)", plan.shape().headDim());
                out.printf("%-6s %s%n", "layer", c.perHeadQuant() ? "bits per KV head" : "bits");
                for (LayerPlan l : plan.layers()) {
                    out.printf("%-6d %s%n", l.layer(), l.label());
                }
                out.printf("average: key %.3f bits, value %.3f bits, KV %.3f bits%n", plan.averageKeyBits(),
                        plan.averageValueBits(), plan.averageBits());
                out.println("valid");
            }
            out.flush();
        }
    }
}
