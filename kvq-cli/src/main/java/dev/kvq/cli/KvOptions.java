package dev.kvq.cli;

import dev.kvq.config.CachePolicy;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.io.config.ConfigFiles;
import dev.kvq.KvqException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine.Help.Visibility;
import picocli.CommandLine.Option;

/**
 * The KV-cache options every model command takes. A {@code --kv-config} file (kvq configuration or a KVTuner
 * per-layer/per-head file) is read first; flags given explicitly override its values. Flag names follow KVTuner's
 * scripts (k_bits, v_bits, group_size, residual_length, axis_key, axis_value, asym).
 */
final class KvOptions {
    @Option(names = "--kv-config", paramLabel = "FILE", showDefaultValue = Visibility.NEVER, description = "KV configuration (JSON/YAML) or a KVTuner "
            + "per-layer/per-head precision file; repeat it where a command compares several.")
    List<Path> kvConfigs = new ArrayList<>();

    @Option(names = "--fp", description = "Run with the full-precision (float32) cache: no quantization (no other "
            + "cache flag applies).")
    boolean fp;

    @Option(names = "--backend", paramLabel = "NAME", description = "Quantizer backend: vanilla, hqq, quanto or a "
            + "discovered one (kvq backends) (default: the configuration's, else vanilla).")
    String backend;

    @Option(names = {"--k-bits", "--k_bits"}, paramLabel = "N", converter = Checks.Bits.class,
            description = "Key bits, 1 to 8 (default: the configuration's, else 4).")
    Integer keyBits;

    @Option(names = {"--v-bits", "--v_bits"}, paramLabel = "N", converter = Checks.Bits.class,
            description = "Value bits, 1 to 8 (default: the configuration's, else 4).")
    Integer valueBits;

    @Option(names = {"--axis-key", "--axis_key"}, paramLabel = "A", converter = Checks.Axis.class,
            description = "Key axis: 0 per token, 1 per channel (-1 for quanto) (default: the scheme's, else 0).")
    Integer axisKey;

    @Option(names = {"--axis-value", "--axis_value"}, paramLabel = "A", converter = Checks.Axis.class,
            description = "Value axis: 0 per token, 1 per channel (default: the scheme's, else 0).")
    Integer axisValue;

    @Option(names = {"--group-size", "--group_size"}, paramLabel = "G", converter = Checks.GroupSize.class,
            description = "Group size; -1 = whole head_dim rows (default: the scheme's, else 64).")
    Integer groupSize;

    @Option(names = {"--residual-length", "--residual_length"}, paramLabel = "R", converter = Checks.NotNegative.class,
            description = "Tokens kept in full precision before quantization (default: the scheme's, else 128).")
    Integer residualLength;

    @Option(names = "--asym", description = "Asymmetric quantization (default: the scheme's, else symmetric).")
    Boolean asym;

    @Option(names = "--sym", description = "Symmetric quantization.")
    Boolean sym;

    @Option(names = "--policy", paramLabel = "kvtuner|append", converter = Checks.Policy.class,
            description = "Cache policy (default: the configuration's, else append).")
    String policy;

    @Option(names = "--force-quant", description = "KVTuner's force_quant (policy kvtuner) (default: false).")
    Boolean forceQuant;

    @Option(names = "--placement", paramLabel = "host|device", description = "Where the quantized cache lives: host "
            + "(dequantized into dense past tensors every step) or device (kept in the runtime's memory and read in place "
            + "by the model; policy append). Default: the configuration's, else host.")
    String placement;

    @Option(names = "--scale-dtype", paramLabel = "float16|float32", description = "Precision of quantization scales "
            + "and zeros. Default: float16 under placement device, float32 on the host.")
    String scaleDtype;

    @Option(names = "--scheme", paramLabel = "pertoken|kivi", converter = Checks.Scheme.class,
            description = "Start from KVTuner's per-token preset (residual 0, group -1, axes 0/0, asym) or KIVI preset "
                + "(residual 32, group 32, axes 1/0, asym); per-token-asym and per-channel-asym are accepted too "
                + "(default: none, KVTuner's defaults: group 64, residual 128, axes 0/0, symmetric).")
    String scheme;

    /**
     * Combinations of these flags that cannot work, and the --kv-config files, checked before anything is loaded.
     *
     * @param several whether the command compares several configurations (repeated --kv-config)
     */
    void check(boolean several) {
        Checks.require(!(Boolean.TRUE.equals(asym) && Boolean.TRUE.equals(sym)),
                "--asym and --sym contradict each other; give one of them");
        if (fp) {
            List<String> given = new ArrayList<>(cacheFlags());
            if (!kvConfigs.isEmpty()) {
                given.add("--kv-config");
            }
            Checks.require(given.isEmpty(), "--fp runs the full-precision cache, so " + String.join(", ", given)
                    + (given.size() == 1 ? " has" : " have") + " no effect; drop --fp or " + String.join(", ", given));
        }
        Checks.require(several || kvConfigs.size() <= 1, "--kv-config is given " + kvConfigs.size() + " times, but this "
                + "command runs one configuration; give one (kvq eval and kvq bench compare several)");
        for (Path file : kvConfigs) {
            Checks.inputFile("--kv-config", file);
        }
    }

    /** The cache flags given on the command line. */
    List<String> cacheFlags() {
        List<String> out = new ArrayList<>();
        Object[][] flags = {{"--backend", backend}, {"--k-bits", keyBits}, {"--v-bits", valueBits},
            {"--axis-key", axisKey}, {"--axis-value", axisValue}, {"--group-size", groupSize},
            {"--residual-length", residualLength}, {"--asym", asym}, {"--sym", sym}, {"--policy", policy},
            {"--force-quant", forceQuant}, {"--scheme", scheme}};
        for (Object[] f : flags) {
            if (f[1] != null) {
                out.add((String) f[0]);
            }
        }
        return out;
    }

    /** The configuration these options describe (the first --kv-config when several are given). */
    /** The caches of {@code config} for {@code dir}'s model, or the float32 cache with --fp. */
    dev.kvq.generate.CacheFactory caches(KvQuantConfig config, dev.kvq.generate.model.ModelDir dir) {
        return fp ? dev.kvq.generate.CacheFactory.fullPrecision(dir.config().shape())
                : dev.kvq.generate.CacheFactory.quantized(dev.kvq.cache.quantized.KvCaches.spec(config,
                        dir.config().shape()));
    }

    KvQuantConfig resolve() {
        return resolve(scheme, keyBits, valueBits, kvConfigs.isEmpty() ? null : kvConfigs.getFirst());
    }

    KvQuantConfig resolve(String scheme, Integer keyBits, Integer valueBits) {
        return resolve(scheme, keyBits, valueBits, kvConfigs.isEmpty() ? null : kvConfigs.getFirst());
    }

    /**
     * The configuration with a scheme preset and bits that override the flags' (for sweeps); null arguments fall back
     * to the flags.
     */
    KvQuantConfig resolve(String scheme, Integer keyBits, Integer valueBits, Path kvConfig) {
        KvQuantConfig.Builder b;
        if (scheme != null) {
            b = switch (scheme.toLowerCase(java.util.Locale.ROOT).replace("-", "")) {
                case "pertoken" -> KvQuantConfig.perToken(4, 4);
                case "kivi" -> KvQuantConfig.kivi(4, 4);
                default -> throw KvqException.config("--scheme must be pertoken or kivi, was '" + scheme + "'");
            };
        } else {
            b = KvQuantConfig.builder();
        }
        KvQuantConfig config = b.build();
        if (kvConfig != null) {
            config = ConfigFiles.load(kvConfig, config);
        }
        if (kvConfig != null && (keyBits != null || valueBits != null) && (config.perLayerQuant() || config.perHeadQuant())) {
            String flag = keyBits != null ? "--k-bits" : "--v-bits";
            String unit = config.perLayerQuant() ? "layer" : "head";
            throw KvqException.config(flag + " has no effect with " + kvConfig + ": its per-" + unit + " precision sets "
                    + "the bits of every " + unit + "; drop " + flag + " or edit the file");
        }
        checkGroups(config, scheme, kvConfig);
        b = config.toBuilder();
        if (backend != null) {
            b.backend(backend);
        }
        if (keyBits != null || valueBits != null) {
            b.bits(keyBits != null ? keyBits : config.effectiveKeyBits(), valueBits != null ? valueBits
                    : config.effectiveValueBits());
        }
        if (axisKey != null || axisValue != null) {
            b.axes(axisKey != null ? axisKey : config.axisKey(), axisValue != null ? axisValue : config.axisValue());
        }
        if (groupSize != null) {
            b.groupSize(groupSize);
        }
        if (residualLength != null) {
            b.residualLength(residualLength);
        }
        if (Boolean.TRUE.equals(asym)) {
            b.asym(true);
        }
        if (Boolean.TRUE.equals(sym)) {
            b.asym(false);
        }
        if (policy != null) {
            b.policy(CachePolicy.parse(policy));
        }
        if (forceQuant != null) {
            b.forceQuant(forceQuant);
        }
        if (placement != null) {
            b.placement(dev.kvq.config.Placement.parse(placement));
        }
        if (scaleDtype != null) {
            b.scaleDtype(scaleDtype);
        }
        return b.build();
    }

    /** --group-size and --residual-length against each other and the values they meet in a scheme or file. */
    private void checkGroups(KvQuantConfig config, String scheme, Path kvConfig) {
        int group = groupSize != null ? groupSize : config.groupSize();
        int residual = residualLength != null ? residualLength : config.residualLength();
        if ((groupSize == null && residualLength == null) || residual <= 0 || group <= 0 || residual % group == 0) {
            return;
        }
        String from = scheme != null ? "the " + scheme + " scheme's" : kvConfig != null ? kvConfig.getFileName() + "'s"
                : "KVTuner's default";
        if (residualLength == null) {
            throw KvqException.config("--group-size " + group + " does not divide the residual window of " + residual
                    + " tokens (" + from + " residual_length), whose blocks must hold whole groups: give a --group-size "
                    + "that divides " + residual + ", or a --residual-length that is a multiple of " + group);
        }
        if (groupSize == null) {
            throw KvqException.config("--residual-length " + residual + " is not a multiple of the group size " + group
                    + " (" + from + " q_group_size), so its blocks would not hold whole groups: give a multiple of "
                    + group + ", or a --group-size that divides " + residual);
        }
        throw KvqException.config("--residual-length " + residual + " is not a multiple of --group-size " + group
                + ", so its blocks would not hold whole groups: give a residual length that is a multiple of the group "
                + "size");
    }
}
