package dev.kvq.config;

import dev.kvq.KvqException;
import java.util.Locale;

/** Where a cache's history lives and is read by the model. */
public enum Placement {
    /**
     * In host memory: every step the history is dequantized into dense float past tensors that the runtime copies
     * to where the model runs. Works for every policy and every model kvq can load.
     */
    HOST("host"),
    /**
     * In memory the runtime owns (GPU memory on CUDA): packed codes, scales, zeros and the residual stay there between
     * steps and the model dequantizes the history inside its forward pass; each step moves only new tokens. Policy
     * {@code append} only.
     */
    DEVICE("device");

    private final String id;

    Placement(String id) {
        this.id = id;
    }

    public String id() {
        return id;
    }

    public static Placement parse(String value) {
        String v = value == null ? "" : value.trim().toLowerCase(Locale.ROOT);
        for (Placement p : values()) {
            if (p.id.equals(v)) {
                return p;
            }
        }
        throw KvqException.config("placement must be host or device, was '" + value + "'");
    }

    @Override
    public String toString() {
        return id;
    }
}
