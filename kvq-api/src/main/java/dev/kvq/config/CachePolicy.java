package dev.kvq.config;

import dev.kvq.KvqException;
import java.util.Arrays;
import java.util.Locale;
import java.util.stream.Collectors;

/** How the cache moves tokens from the full-precision residual window into quantized storage. */
public enum CachePolicy {
    /**
     * KVTuner's {@code FlexibleQuantizedCache.update}, step for step: the whole prompt is quantized at
     * prefill, and at every flush the whole history is dequantized and quantized again. Includes the
     * reference's {@code force_quant} defect (a prompt whose length is a multiple of
     * {@code residual_length} stays unquantized).
     */
    KVTUNER("kvtuner"),
    /**
     * Each completed residual block is quantized once and appended (as KIVI does): constant work per
     * decode step and no drift from re-quantizing already quantized history.
     */
    APPEND("append");

    private final String id;

    CachePolicy(String id) {
        this.id = id;
    }

    public String id() {
        return id;
    }

    public static CachePolicy parse(String value) {
        String v = value == null ? "" : value.trim().toLowerCase(Locale.ROOT);
        for (CachePolicy p : values()) {
            if (p.id.equals(v)) {
                return p;
            }
        }
        throw KvqException.config("policy must be one of " + Arrays.stream(values()).map(CachePolicy::id)
                .collect(Collectors.joining(", ")) + ", was '" + value + "'");
    }

    @Override
    public String toString() {
        return id;
    }
}
