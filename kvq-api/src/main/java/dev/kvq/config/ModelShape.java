package dev.kvq.config;

import dev.kvq.KvqException;

/** The KV geometry of a decoder: layer count, KV heads per layer, head dimension. */
public record ModelShape(int layers, int kvHeads, int headDim) {
    public ModelShape {
        if (layers < 1) {
            throw KvqException.config("layers must be at least 1, was " + layers);
        }
        if (kvHeads < 1) {
            throw KvqException.config("kv heads must be at least 1, was " + kvHeads);
        }
        if (headDim < 1) {
            throw KvqException.config("head_dim must be at least 1, was " + headDim);
        }
    }

    /** Floats of K (or V) per token in one layer: kvHeads x headDim. */
    public int floatsPerTokenPerLayer() {
        return kvHeads * headDim;
    }

    /** Bytes a float16 cache needs for one token across all layers, keys and values. */
    public long fp16BytesPerToken() {
        return 2L * 2L * layers * (long) kvHeads * headDim;
    }
}
