package dev.kvq.cli;

import dev.kvq.KvqException;
import dev.kvq.config.KvQuantConfig;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import picocli.CommandLine.Help.Visibility;
import picocli.CommandLine.Option;

/**
 * Several cache configurations in one run: KVTuner's standard (key, value) pairs under the per-token and/or KIVI
 * schemes, with the other KV options applied on top.
 */
final class SweepOptions {
    @Option(names = "--sweep", split = ",", paramLabel = "pertoken|kivi", converter = Checks.Scheme.class,
            showDefaultValue = Visibility.NEVER,
            description = "Evaluate every --pairs entry under these schemes (with the other KV flags on top); "
                + "--kv-config files are evaluated beside them (default: no sweep).")
    List<String> schemes = new ArrayList<>();

    @Option(names = "--pairs", split = ",", paramLabel = "K-V", defaultValue = "8-8,8-4,4-4,4-2,2-2",
            converter = Checks.BitPair.class, description = "Key-value bit pairs of --sweep, 1 to 8 bits each.")
    List<String> pairs;

    boolean active() {
        return !schemes.isEmpty();
    }

    /** The sweep against the cache flags: --sweep sets the scheme and the bits of each pair. */
    void check(KvOptions kv) {
        if (!active()) {
            return;
        }
        List<String> clash = kv.cacheFlags().stream().filter(f -> List.of("--scheme", "--k-bits", "--v-bits").contains(f))
                .toList();
        Checks.require(clash.isEmpty(), "--sweep sets the scheme and the bits of each --pairs entry, so "
                + String.join(", ", clash) + " would have no effect; drop " + String.join(", ", clash) + " or --sweep");
        Checks.require(!kv.fp, "--fp runs only the full-precision cache, so --sweep would have no effect; drop one");
    }

    /** Name to configuration, e.g. {@code pertoken K8V4}. */
    Map<String, KvQuantConfig> configs(KvOptions kv) {
        Map<String, KvQuantConfig> out = new LinkedHashMap<>();
        for (String scheme : schemes) {
            for (String pair : pairs) {
                String[] kvBits = pair.split("-");
                if (kvBits.length != 2) {
                    throw KvqException.config("--pairs entries look like 8-4 (key bits - value bits), was '" + pair + "'");
                }
                int k = Integer.parseInt(kvBits[0].trim());
                int v = Integer.parseInt(kvBits[1].trim());
                KvQuantConfig c = kv.resolve(scheme, k, v, null);
                out.put(scheme + " " + (k == v ? "KV" + k : "K" + k + "V" + v), c);
            }
        }
        return out;
    }
}
