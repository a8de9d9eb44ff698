package dev.kvq.config;

import dev.kvq.KvqException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * The precision of every layer and KV head of one model under one configuration. Made by
 * {@link #resolve(KvQuantConfig, ModelShape)}, which runs the checks that need the model's geometry.
 */
public record PrecisionPlan(ModelShape shape, List<LayerPlan> layers) {
    public PrecisionPlan {
        layers = List.copyOf(layers);
        if (layers.size() != shape.layers()) {
            throw new IllegalArgumentException("plan has " + layers.size() + " layers, model " + shape.layers());
        }
    }

    /**
     * Resolves the bits of each layer and head, checking the config against the model: the group size
     * divides head_dim; a per-layer file names exactly the model's layers; a per-head file gives each
     * layer exactly the model's KV heads, in order.
     */
    public static PrecisionPlan resolve(KvQuantConfig config, ModelShape shape) {
        if (config.groupSize() > 0 && shape.headDim() % config.groupSize() != 0) {
            throw KvqException.config("q_group_size (" + config.groupSize() + ") must divide head_dim ("
                    + shape.headDim() + "); use a divisor of " + shape.headDim() + " or -1 for whole rows");
        }
        List<LayerPlan> plans = new ArrayList<>(shape.layers());
        if (config.perLayerQuant()) {
            checkLayers("per_layer_config", config.perLayerConfig(), shape);
            for (int l = 0; l < shape.layers(); l++) {
                plans.add(LayerPlan.uniform(l, shape.kvHeads(), config.perLayerConfig().get(l)));
            }
        } else if (config.perHeadQuant()) {
            checkLayers("per_head_config", config.perHeadConfig(), shape);
            for (int l = 0; l < shape.layers(); l++) {
                Map<Integer, LayerBits> heads = config.perHeadConfig().get(l);
                if (heads.size() != shape.kvHeads()) {
                    throw KvqException.config("per_head_config layer " + l + " has " + heads.size()
                            + " heads, but the model has " + shape.kvHeads() + " KV heads per layer");
                }
                int[] k = new int[shape.kvHeads()];
                int[] v = new int[shape.kvHeads()];
                int expected = 0;
                for (Map.Entry<Integer, LayerBits> e : heads.entrySet()) {
                    if (e.getKey() != expected) {
                        throw KvqException.config("per_head_config layer " + l + " lists head " + e.getKey()
                                + " where head " + expected + " is expected: heads must be listed in order 0.."
                                + (shape.kvHeads() - 1) + " (the reference would silently scramble them)");
                    }
                    k[expected] = e.getValue().keyBits();
                    v[expected] = e.getValue().valueBits();
                    expected++;
                }
                plans.add(new LayerPlan(l, k, v));
            }
        } else {
            LayerBits bits = new LayerBits(config.effectiveKeyBits(), config.effectiveValueBits());
            for (int l = 0; l < shape.layers(); l++) {
                plans.add(LayerPlan.uniform(l, shape.kvHeads(), bits));
            }
        }
        return new PrecisionPlan(shape, plans);
    }

    private static void checkLayers(String field, Map<Integer, ?> config, ModelShape shape) {
        TreeSet<Integer> named = new TreeSet<>(config.keySet());
        for (Integer layer : named) {
            if (layer < 0 || layer >= shape.layers()) {
                throw KvqException.config(field + " names layer " + layer + ", but the model has " + shape.layers()
                        + " layers (0.." + (shape.layers() - 1) + ")");
            }
        }
        for (int l = 0; l < shape.layers(); l++) {
            if (!named.contains(l)) {
                throw KvqException.config(field + " misses layer " + l + ": the model has " + shape.layers()
                        + " layers (0.." + (shape.layers() - 1) + ") and each needs an entry");
            }
        }
    }

    public LayerPlan layer(int index) {
        return layers.get(index);
    }

    /** Mean key bits over layers and heads. */
    public double averageKeyBits() {
        return layers.stream().mapToDouble(LayerPlan::averageKeyBits).average().orElse(0);
    }

    /** Mean value bits over layers and heads. */
    public double averageValueBits() {
        return layers.stream().mapToDouble(LayerPlan::averageValueBits).average().orElse(0);
    }

    /** Mean of key and value bits over layers and heads (the "average KV bits" of KVTuner). */
    public double averageBits() {
        return (averageKeyBits() + averageValueBits()) / 2.0;
    }

    /** Every distinct bit width the plan uses for keys. */
    public List<Integer> keyBitWidths() {
        TreeSet<Integer> s = new TreeSet<>();
        layers.forEach(p -> { for (int b : p.keyBits()) s.add(b); });
        return Collections.unmodifiableList(new ArrayList<>(s));
    }

    /** Every distinct bit width the plan uses for values. */
    public List<Integer> valueBitWidths() {
        TreeSet<Integer> s = new TreeSet<>();
        layers.forEach(p -> { for (int b : p.valueBits()) s.add(b); });
        return Collections.unmodifiableList(new ArrayList<>(s));
    }
}
