package dev.kvq.config;

import dev.kvq.KvqException;

/** Key and value bit widths of one layer (or one KV head of a layer). */
public record LayerBits(int keyBits, int valueBits) {
    public static final int MIN_BITS = 1;
    public static final int MAX_BITS = 8;

    public LayerBits {
        checkBits("nbits_key", keyBits);
        checkBits("nbits_value", valueBits);
    }

    public static LayerBits of(int keyBits, int valueBits) {
        return new LayerBits(keyBits, valueBits);
    }

    /** Average of key and value bits. */
    public double average() {
        return (keyBits + valueBits) / 2.0;
    }

    /** KVTuner's short name: {@code KV4} when equal, else {@code K8V4}. */
    public String label() {
        return keyBits == valueBits ? "KV" + keyBits : "K" + keyBits + "V" + valueBits;
    }

    static void checkBits(String field, int bits) {
        if (bits < MIN_BITS || bits > MAX_BITS) {
            throw KvqException.config(field + " must be between " + MIN_BITS + " and " + MAX_BITS + ", was " + bits);
        }
    }

    @Override
    public String toString() {
        return label();
    }
}
