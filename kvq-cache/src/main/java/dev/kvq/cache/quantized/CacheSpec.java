package dev.kvq.cache.quantized;

import dev.kvq.KvqException;
import dev.kvq.discovery.ProviderRegistry;
import dev.kvq.config.CachePolicy;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.LayerPlan;
import dev.kvq.config.ModelShape;
import dev.kvq.config.PrecisionPlan;
import dev.kvq.spi.QuantSpec;
import dev.kvq.spi.Quantizer;
import dev.kvq.spi.QuantizerProvider;
import java.util.HashMap;
import java.util.Map;

/**
 * A validated cache configuration for one model: the precision plan and one quantizer per (bits, axis) it
 * uses. Validation (model geometry, backend capabilities, policy rules) happens once, here; making caches
 * from it is cheap, so a batch or a search makes many.
 */
public final class CacheSpec {
    private final KvQuantConfig config;
    private final PrecisionPlan plan;
    private final QuantizerProvider provider;
    private final Map<Long, Quantizer> quantizers = new HashMap<>();

    CacheSpec(KvQuantConfig config, ModelShape shape, ProviderRegistry<QuantizerProvider> backends) {
        this.config = config;
        this.plan = PrecisionPlan.resolve(config, shape);
        this.provider = backends.get(config.backend());
        checkPolicy(config, provider);
        for (LayerPlan layer : plan.layers()) {
            for (int h = 0; h < layer.heads(); h++) {
                String where = config.perHeadQuant() ? " of layer " + layer.layer() + " head " + h
                        : " of layer " + layer.layer();
                quantizer(layer.keyBits(h), config.axisKey(), "keys" + where);
                quantizer(layer.valueBits(h), config.axisValue(), "values" + where);
            }
        }
    }

    private static void checkPolicy(KvQuantConfig config, QuantizerProvider provider) {
        if (config.policy() == CachePolicy.APPEND) {
            for (int axis : new int[] {config.axisKey(), config.axisValue()}) {
                QuantSpec spec = new QuantSpec(8, axis, config.groupSize(), config.asym(), config.backendOptions());
                if (provider.groupsSpanTokens(spec) && config.residualLength() == 0) {
                    throw KvqException.config("policy append quantizes per-channel data (backend '" + provider.name()
                            + "' axis " + axis + ") in blocks of residual_length tokens, so residual_length must be a "
                            + "positive multiple of q_group_size, was 0");
                }
            }
            if (config.forceQuant()) {
                throw KvqException.config("force_quant is a behaviour of policy kvtuner; policy append always quantizes "
                        + "every completed block of residual_length tokens. Remove force_quant or use policy kvtuner");
            }
        }
    }

    private Quantizer quantizer(int bits, int axis, String role) {
        long key = ((long) bits << 8) | (axis & 0xFF);
        Quantizer q = quantizers.get(key);
        if (q == null) {
            QuantSpec spec = new QuantSpec(bits, axis, config.groupSize(), config.asym(), config.backendOptions());
            provider.validate(spec, role);
            q = provider.create(spec);
            quantizers.put(key, q);
        }
        return q;
    }

    Quantizer keyQuantizer(int layer, int head) {
        return quantizer(plan.layer(layer).keyBits(head), config.axisKey(), "keys");
    }

    Quantizer valueQuantizer(int layer, int head) {
        return quantizer(plan.layer(layer).valueBits(head), config.axisValue(), "values");
    }

    public KvQuantConfig config() {
        return config;
    }

    public PrecisionPlan plan() {
        return plan;
    }

    public ModelShape shape() {
        return plan.shape();
    }

    public QuantizerProvider backend() {
        return provider;
    }

    /** A new, empty cache for one sequence. */
    public QuantizedKvCache newCache() {
        return new QuantizedKvCache(this);
    }
}
