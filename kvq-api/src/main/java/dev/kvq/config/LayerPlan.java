package dev.kvq.config;

import java.util.Arrays;

/**
 * The resolved precision of one layer: key and value bits for each KV head. A per-layer plan has
 * the same bits for every head.
 */
public record LayerPlan(int layer, int[] keyBits, int[] valueBits) {
    public LayerPlan {
        keyBits = keyBits.clone();
        valueBits = valueBits.clone();
        if (keyBits.length != valueBits.length || keyBits.length == 0) {
            throw new IllegalArgumentException("key and value bits need one entry per head");
        }
    }

    public static LayerPlan uniform(int layer, int heads, LayerBits bits) {
        int[] k = new int[heads];
        int[] v = new int[heads];
        Arrays.fill(k, bits.keyBits());
        Arrays.fill(v, bits.valueBits());
        return new LayerPlan(layer, k, v);
    }

    public int heads() {
        return keyBits.length;
    }

    public int keyBits(int head) {
        return keyBits[head];
    }

    public int valueBits(int head) {
        return valueBits[head];
    }

    @Override
    public int[] keyBits() {
        return keyBits.clone();
    }

    @Override
    public int[] valueBits() {
        return valueBits.clone();
    }

    /** True when every head has the same key bits and the same value bits. */
    public boolean isUniform() {
        return Arrays.stream(keyBits).distinct().count() == 1 && Arrays.stream(valueBits).distinct().count() == 1;
    }

    public double averageKeyBits() {
        return Arrays.stream(keyBits).average().orElse(0);
    }

    public double averageValueBits() {
        return Arrays.stream(valueBits).average().orElse(0);
    }

    /** The label of the layer's bits when uniform ({@code K8V4}), else one label per head. */
    public String label() {
        if (isUniform()) {
            return new LayerBits(keyBits[0], valueBits[0]).label();
        }
        StringBuilder sb = new StringBuilder();
        for (int h = 0; h < keyBits.length; h++) {
            sb.append(h == 0 ? "" : " ").append(new LayerBits(keyBits[h], valueBits[h]).label());
        }
        return sb.toString();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof LayerPlan p && p.layer == layer && Arrays.equals(p.keyBits, keyBits)
                && Arrays.equals(p.valueBits, valueBits);
    }

    @Override
    public int hashCode() {
        return 31 * (31 * layer + Arrays.hashCode(keyBits)) + Arrays.hashCode(valueBits);
    }

    @Override
    public String toString() {
        return "layer " + layer + ": " + label();
    }
}
