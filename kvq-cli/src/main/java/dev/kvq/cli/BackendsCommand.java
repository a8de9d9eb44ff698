package dev.kvq.cli;

import dev.kvq.discovery.KvBackends;
import dev.kvq.discovery.ProviderRegistry;
import dev.kvq.spi.Capabilities;
import dev.kvq.spi.QuantizerProvider;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.stream.Collectors;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/** {@code kvq backends}: the quantizer backends discovered on the module path and class path. */
@Command(name = "backends", mixinStandardHelpOptions = true,
        description = "List the quantizer backends kvq discovers, with their capabilities.")
final class BackendsCommand implements Callable<Integer> {
    @Option(names = "--json", description = "Print a JSON array of objects (name, bits, axes, ...).")
    boolean json;

    @Spec
    CommandSpec spec;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        ProviderRegistry<QuantizerProvider> backends = KvBackends.discover();
        if (json) {
            List<Map<String, Object>> rows = new ArrayList<>();
            for (QuantizerProvider p : backends.all()) {
                Capabilities c = p.capabilities();
                Map<String, Object> row = new LinkedHashMap<>();
                row.put("name", p.name());
                row.put("version", p.version());
                row.put("origin", p.origin());
                row.put("bits", c.bits());
                row.put("axes", c.axes());
                row.put("group_size_minus_one", c.wholeRowGroups());
                row.put("symmetric", c.symmetric());
                row.put("asymmetric", c.asymmetric());
                row.put("options", c.options());
                row.put("description", c.description());
                rows.add(row);
            }
            out.println(Json.write(rows));
        } else {
            out.printf("%-10s %-16s %-8s %-10s %-10s %s%n", "backend", "bits", "axes", "modes", "group -1", "description");
            for (QuantizerProvider p : backends.all()) {
                Capabilities c = p.capabilities();
                String modes = (c.asymmetric() ? "asym" : "") + (c.asymmetric() && c.symmetric() ? "," : "")
                        + (c.symmetric() ? "sym" : "");
                out.printf("%-10s %-16s %-8s %-10s %-10s %s%n", p.name(), join(c.bits()), join(c.axes()), modes,
                        c.wholeRowGroups() ? "yes" : "no", c.description());
            }
        }
        for (ProviderRegistry.LoadFailure f : backends.failures()) {
            spec.commandLine().getErr().println("kvq: warning: " + f.message());
        }
        out.flush();
        return 0;
    }

    private static String join(java.util.Collection<Integer> values) {
        return values.stream().map(String::valueOf).collect(Collectors.joining(","));
    }
}
