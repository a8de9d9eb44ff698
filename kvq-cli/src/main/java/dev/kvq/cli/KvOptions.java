package dev.kvq.cli;

import dev.kvq.config.CachePolicy;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.io.config.ConfigFiles;
import java.nio.file.Path;
import picocli.CommandLine.Option;

/**
 * The KV-cache options every model command takes. A {@code --kv-config} file (kvq configuration or a KVTuner
 * per-layer/per-head file) is read first; flags given explicitly override its values. Flag names follow KVTuner's
 * scripts (k_bits, v_bits, group_size, residual_length, axis_key, axis_value, asym).
 */
final class KvOptions {
    @Option(names = "--kv-config", paramLabel = "FILE", description = "KV configuration (JSON/YAML) or a KVTuner "
            + "per-layer/per-head precision file; repeat it where a command compares several.")
    java.util.List<Path> kvConfigs = new java.util.ArrayList<>();

    @Option(names = "--fp", description = "Run with the full-precision (float32) cache: no quantization.")
    boolean fp;

    @Option(names = "--backend", paramLabel = "NAME", description = "Quantizer backend (default vanilla).")
    String backend;

    @Option(names = {"--k-bits", "--k_bits"}, paramLabel = "N", description = "Key bits.")
    Integer keyBits;

    @Option(names = {"--v-bits", "--v_bits"}, paramLabel = "N", description = "Value bits.")
    Integer valueBits;

    @Option(names = {"--axis-key", "--axis_key"}, paramLabel = "A", description = "0 per token, 1 per channel "
            + "(-1 for quanto).")
    Integer axisKey;

    @Option(names = {"--axis-value", "--axis_value"}, paramLabel = "A", description = "0 per token, 1 per channel.")
    Integer axisValue;

    @Option(names = {"--group-size", "--group_size"}, paramLabel = "G", description = "Group size; -1 = whole head_dim rows.")
    Integer groupSize;

    @Option(names = {"--residual-length", "--residual_length"}, paramLabel = "R",
            description = "Tokens kept in full precision before quantization.")
    Integer residualLength;

    @Option(names = "--asym", description = "Asymmetric quantization.")
    Boolean asym;

    @Option(names = "--sym", description = "Symmetric quantization.")
    Boolean sym;

    @Option(names = "--policy", paramLabel = "kvtuner|append", description = "Cache policy.")
    String policy;

    @Option(names = "--force-quant", description = "KVTuner's force_quant (policy kvtuner).")
    Boolean forceQuant;

    @Option(names = "--placement", paramLabel = "host|device", description = "Where the quantized cache lives: host "
            + "(dequantized into dense past tensors every step) or device (kept in the runtime's memory and read in place "
            + "by the model; policy append). Default: the configuration's, else host.")
    String placement;

    @Option(names = "--scale-dtype", paramLabel = "float16|float32", description = "Precision of quantization scales "
            + "and zeros. Default: float16 under placement device, float32 on the host.")
    String scaleDtype;

    @Option(names = "--scheme", paramLabel = "pertoken|kivi", description = "Start from KVTuner's per-token preset "
            + "(residual 0, group -1, axes 0/0, asym) or KIVI preset (residual 32, group 32, axes 1/0, asym).")
    String scheme;

    /** The configuration these options describe (the first --kv-config when several are given). */
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
                default -> throw dev.kvq.KvqException.config("--scheme must be pertoken or kivi, was '" + scheme + "'");
            };
        } else {
            b = KvQuantConfig.builder();
        }
        KvQuantConfig config = b.build();
        if (kvConfig != null) {
            config = ConfigFiles.load(kvConfig, config);
        }
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
}
