package dev.kvq.config;

import dev.kvq.KvqException;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.regex.Pattern;

/**
 * A quantized KV cache configuration: KVTuner's {@code FlexibleQuantizedCacheConfig} fields plus kvq's
 * backend, runtime, device and cache policy.
 *
 * <p>Validated on construction; messages name the field (in KVTuner's spelling, which is also the
 * JSON/YAML key), the value and what is allowed. Checks that need the model's geometry (group size
 * against head_dim, layer and head coverage of per-layer/per-head files) happen in
 * {@link PrecisionPlan#resolve(KvQuantConfig, ModelShape)}; checks that need the backend's capabilities
 * happen when the backend is asked to run the plan.
 *
 * @param backend quantizer backend name, as its provider reports it ({@code vanilla}, {@code hqq}, ...)
 * @param runtime inference runtime name ({@code onnx}, {@code djl})
 * @param device {@code cpu}, {@code cuda} or {@code cuda:N}
 * @param policy how tokens move from the residual window into quantized storage
 * @param nbits default bit width for keys and values
 * @param nbitsKey key bits; 0 means {@code nbits}
 * @param nbitsValue value bits; 0 means {@code nbits}
 * @param axisKey 0 per token (groups along head_dim), 1 per channel (groups along tokens); -1 is
 *     optimum-quanto's spelling of per-channel
 * @param axisValue as {@code axisKey}, for values
 * @param asym asymmetric (min/max) rather than symmetric (absmax) quantization
 * @param groupSize elements per quantization group; -1 means one group per head_dim row
 * @param residualLength tokens kept in full precision before they are quantized
 * @param computeDtype the reference's compute dtype; kvq always computes in float32 and keeps this for
 *     reporting
 * @param forceQuant quantize part of the prompt at prefill and return the dequantized prompt (KVTuner)
 * @param perLayerQuant whether {@code perLayerConfig} decides the bits of each layer
 * @param perLayerConfig layer index to key/value bits
 * @param perLayerConfigPath where {@code perLayerConfig} was read from, if from a file
 * @param perHeadQuant whether {@code perHeadConfig} decides the bits of each KV head
 * @param perHeadConfig layer index to (KV head index to bits), in file order
 * @param perHeadConfigPath where {@code perHeadConfig} was read from, if from a file
 * @param backendOptions backend-specific options, for example {@code optimize=false} for hqq
 * @param placement where the cache lives and is read ({@link Placement}); default host
 * @param scaleDtype {@code float16} or {@code float32}: the precision in which quantization scales and zeros are
 *     held; default float16 under placement device (a 4-bit cache with groups of 32 then costs 5 bits per element,
 *     not 6), float32 on the host
 */
public record KvQuantConfig(
        String backend,
        String runtime,
        String device,
        CachePolicy policy,
        int nbits,
        int nbitsKey,
        int nbitsValue,
        int axisKey,
        int axisValue,
        boolean asym,
        int groupSize,
        int residualLength,
        String computeDtype,
        boolean forceQuant,
        boolean perLayerQuant,
        Map<Integer, LayerBits> perLayerConfig,
        String perLayerConfigPath,
        boolean perHeadQuant,
        Map<Integer, Map<Integer, LayerBits>> perHeadConfig,
        String perHeadConfigPath,
        Map<String, String> backendOptions,
        Placement placement,
        String scaleDtype) {

    private static final Pattern NAME = Pattern.compile("[a-z][a-z0-9._-]*");
    private static final Pattern DEVICE = Pattern.compile("cpu|cuda(:\\d+)?");

    public KvQuantConfig {
        backend = name("backend", backend);
        runtime = name("runtime", runtime);
        device = device == null ? "cpu" : device.trim().toLowerCase(Locale.ROOT);
        if (!DEVICE.matcher(device).matches()) {
            throw KvqException.config("device must be cpu, cuda or cuda:N, was '" + device + "'");
        }
        Objects.requireNonNull(policy, "policy");
        computeDtype = normalizeDtype(computeDtype);
        if (!perLayerQuant && !perHeadQuant) {
            LayerBits.checkBits(nbitsKey != 0 ? "nbits_key" : "nbits", nbitsKey != 0 ? nbitsKey : nbits);
            LayerBits.checkBits(nbitsValue != 0 ? "nbits_value" : "nbits", nbitsValue != 0 ? nbitsValue : nbits);
        }
        checkAxis("axis_key", axisKey);
        checkAxis("axis_value", axisValue);
        if (groupSize == 0 || groupSize < -1) {
            throw KvqException.config("q_group_size must be -1 (one group per head_dim row) or a positive number, was "
                    + groupSize);
        }
        if (residualLength < 0) {
            throw KvqException.config("residual_length must be 0 or more, was " + residualLength);
        }
        if (residualLength > 0 && groupSize > 0 && residualLength % groupSize != 0) {
            throw KvqException.config("residual_length (" + residualLength + ") must be a multiple of q_group_size ("
                    + groupSize + "), so that flushed blocks hold whole groups");
        }
        if (perLayerQuant && perHeadQuant) {
            throw KvqException.config("per_layer_quant and per_head_quant cannot both be true: choose one precision file");
        }
        perLayerConfig = perLayerConfig == null ? null : Collections.unmodifiableMap(new LinkedHashMap<>(perLayerConfig));
        if (perLayerQuant && (perLayerConfig == null || perLayerConfig.isEmpty())) {
            throw KvqException.config("per_layer_quant is true but neither per_layer_config nor per_layer_config_path "
                    + "gives any layer");
        }
        if (!perLayerQuant && perLayerConfig != null && !perLayerConfig.isEmpty()) {
            throw KvqException.config("per_layer_config is given but per_layer_quant is false: set per_layer_quant: true "
                    + "or remove per_layer_config");
        }
        if (perHeadConfig != null) {
            Map<Integer, Map<Integer, LayerBits>> copy = new LinkedHashMap<>();
            perHeadConfig.forEach((layer, heads) -> copy.put(layer,
                    Collections.unmodifiableMap(new LinkedHashMap<>(Objects.requireNonNull(heads,
                            "per_head_config layer " + layer)))));
            perHeadConfig = Collections.unmodifiableMap(copy);
        }
        if (perHeadQuant && (perHeadConfig == null || perHeadConfig.isEmpty())) {
            throw KvqException.config("per_head_quant is true but neither per_head_config nor per_head_config_path "
                    + "gives any layer");
        }
        if (!perHeadQuant && perHeadConfig != null && !perHeadConfig.isEmpty()) {
            throw KvqException.config("per_head_config is given but per_head_quant is false: set per_head_quant: true "
                    + "or remove per_head_config");
        }
        backendOptions = backendOptions == null ? Map.of() : Collections.unmodifiableMap(new LinkedHashMap<>(backendOptions));
        placement = placement == null ? Placement.HOST : placement;
        scaleDtype = scaleDtype == null ? (placement == Placement.DEVICE ? "float16" : "float32")
                : normalizeDtype(scaleDtype);
        if (scaleDtype.equals("bfloat16")) {
            throw KvqException.config("scale_dtype must be float16 or float32, was bfloat16");
        }
        if (placement == Placement.DEVICE && policy == CachePolicy.KVTUNER) {
            throw KvqException.config("placement device needs policy append: policy kvtuner re-quantizes the whole "
                    + "history at every flush, which only the host can do. Use policy append or placement host");
        }
    }

    /** Whether scales and zeros are held in float16. */
    public boolean halfScales() {
        return scaleDtype.equals("float16");
    }

    /** Key bits when no per-layer or per-head file decides them. */
    public int effectiveKeyBits() {
        return nbitsKey != 0 ? nbitsKey : nbits;
    }

    /** Value bits when no per-layer or per-head file decides them. */
    public int effectiveValueBits() {
        return nbitsValue != 0 ? nbitsValue : nbits;
    }

    /** The options a backend reads, e.g. {@code optimize}; never null. */
    public String option(String key, String fallback) {
        return backendOptions.getOrDefault(key, fallback);
    }

    public static Builder builder() {
        return new Builder();
    }

    /** KVTuner's per-token preset: residual 0, group -1 (whole head_dim rows), axes 0/0, asymmetric. */
    public static Builder perToken(int keyBits, int valueBits) {
        return builder().bits(keyBits, valueBits).axes(0, 0).groupSize(-1).residualLength(0).asym(true);
    }

    /** KVTuner's KIVI preset: residual 32, group 32, keys per channel, values per token, asymmetric. */
    public static Builder kivi(int keyBits, int valueBits) {
        return builder().bits(keyBits, valueBits).axes(1, 0).groupSize(32).residualLength(32).asym(true);
    }

    public Builder toBuilder() {
        Builder b = new Builder();
        b.backend = backend;
        b.runtime = runtime;
        b.device = device;
        b.policy = policy;
        b.nbits = nbits;
        b.nbitsKey = nbitsKey;
        b.nbitsValue = nbitsValue;
        b.axisKey = axisKey;
        b.axisValue = axisValue;
        b.asym = asym;
        b.groupSize = groupSize;
        b.residualLength = residualLength;
        b.computeDtype = computeDtype;
        b.forceQuant = forceQuant;
        b.perLayerQuant = perLayerQuant;
        b.perLayerConfig = perLayerConfig;
        b.perLayerConfigPath = perLayerConfigPath;
        b.perHeadQuant = perHeadQuant;
        b.perHeadConfig = perHeadConfig;
        b.perHeadConfigPath = perHeadConfigPath;
        b.backendOptions = new LinkedHashMap<>(backendOptions);
        b.placement = placement;
        // a dtype equal to the placement's default stays a default, so a later placement change moves it along
        b.scaleDtype = scaleDtype.equals(placement == Placement.DEVICE ? "float16" : "float32") ? null : scaleDtype;
        return b;
    }

    private static String name(String field, String value) {
        if (value == null || !NAME.matcher(value).matches()) {
            throw KvqException.config(field + " must be a lower-case name such as 'vanilla', was '" + value + "'");
        }
        return value;
    }

    private static void checkAxis(String field, int axis) {
        if (axis < -1 || axis > 1) {
            throw KvqException.config(field + " must be 0 (per token), 1 (per channel) or -1 (per channel, "
                    + "optimum-quanto's spelling), was " + axis);
        }
    }

    private static String normalizeDtype(String dtype) {
        if (dtype == null) {
            return "float32";
        }
        String d = dtype.trim().toLowerCase(Locale.ROOT).replace("torch.", "");
        return switch (d) {
            case "float32", "fp32", "float" -> "float32";
            case "float16", "fp16", "half" -> "float16";
            case "bfloat16", "bf16" -> "bfloat16";
            default -> throw KvqException.config("compute_dtype must be float32, float16 or bfloat16, was '" + dtype + "'");
        };
    }

    /**
     * Mutable builder with KVTuner's defaults (nbits 4, axes 0/0, symmetric, group 64, residual 128) and kvq's default
     * policy {@link CachePolicy#APPEND}, which measured better than the reference's (README, design notes).
     */
    public static final class Builder {
        private String backend = "vanilla";
        private String runtime = "onnx";
        private String device = "cpu";
        private CachePolicy policy = CachePolicy.APPEND;
        private int nbits = 4;
        private int nbitsKey;
        private int nbitsValue;
        private int axisKey;
        private int axisValue;
        private boolean asym;
        private int groupSize = 64;
        private int residualLength = 128;
        private String computeDtype = "float32";
        private boolean forceQuant;
        private boolean perLayerQuant;
        private Map<Integer, LayerBits> perLayerConfig;
        private String perLayerConfigPath;
        private boolean perHeadQuant;
        private Map<Integer, Map<Integer, LayerBits>> perHeadConfig;
        private String perHeadConfigPath;
        private Map<String, String> backendOptions = new LinkedHashMap<>();
        private Placement placement = Placement.HOST;
        private String scaleDtype;

        public Builder backend(String v) { this.backend = v; return this; }
        public Builder runtime(String v) { this.runtime = v; return this; }
        public Builder device(String v) { this.device = v; return this; }
        public Builder policy(CachePolicy v) { this.policy = v; return this; }
        public Builder nbits(int v) { this.nbits = v; return this; }
        public Builder bits(int keyBits, int valueBits) { this.nbitsKey = keyBits; this.nbitsValue = valueBits; return this; }
        public Builder axes(int key, int value) { this.axisKey = key; this.axisValue = value; return this; }
        public Builder asym(boolean v) { this.asym = v; return this; }
        public Builder groupSize(int v) { this.groupSize = v; return this; }
        public Builder residualLength(int v) { this.residualLength = v; return this; }
        public Builder computeDtype(String v) { this.computeDtype = v; return this; }
        public Builder forceQuant(boolean v) { this.forceQuant = v; return this; }
        public Builder option(String key, String value) { this.backendOptions.put(key, value); return this; }
        /** Where the cache lives; a scale dtype not set explicitly follows the placement's default. */
        public Builder placement(Placement v) { this.placement = v; return this; }
        /** {@code float16}, {@code float32}, or null for the placement's default. */
        public Builder scaleDtype(String v) { this.scaleDtype = v; return this; }

        public Builder perLayer(Map<Integer, LayerBits> config, String path) {
            this.perLayerQuant = config != null;
            this.perLayerConfig = config;
            this.perLayerConfigPath = path;
            if (config != null) {
                this.perHeadQuant = false;
                this.perHeadConfig = null;
            }
            return this;
        }

        public Builder perHead(Map<Integer, Map<Integer, LayerBits>> config, String path) {
            this.perHeadQuant = config != null;
            this.perHeadConfig = config;
            this.perHeadConfigPath = path;
            if (config != null) {
                this.perLayerQuant = false;
                this.perLayerConfig = null;
            }
            return this;
        }

        public KvQuantConfig build() {
            return new KvQuantConfig(backend, runtime, device, policy, nbits, nbitsKey, nbitsValue, axisKey, axisValue,
                    asym, groupSize, residualLength, computeDtype, forceQuant, perLayerQuant, perLayerConfig,
                    perLayerConfigPath, perHeadQuant, perHeadConfig, perHeadConfigPath, backendOptions, placement,
                    scaleDtype);
        }
    }
}
