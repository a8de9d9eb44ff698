package dev.kvq.cache;

import dev.kvq.config.PrecisionPlan;
import dev.kvq.tensor.KvView;

/**
 * A per-sequence key/value cache: per layer, a quantized store plus a full-precision residual window.
 * One instance holds one sequence; it is not thread-safe (one thread at a time). Close it to free its
 * off-heap memory; use after close fails.
 */
public interface KvCache extends AutoCloseable {
    /** Layers, KV heads and head_dim, and the bits of every layer and head. */
    PrecisionPlan plan();

    /** Tokens held for {@code layer} (quantized plus residual). */
    int length(int layer);

    /**
     * Appends new K and V ({@code [kvHeads, tokens, headDim]}) to {@code layer}, moving tokens into quantized
     * storage as the cache's policy says.
     */
    void append(int layer, KvView keys, KvView values);

    /** Writes the layer's whole history, dequantized, into {@code keys} and {@code values} ({@code [kvHeads, length, headDim]}). */
    void materialize(int layer, KvView keys, KvView values);

    /**
     * KVTuner's {@code update}: appends the new K/V and returns what the reference returns for attention (at
     * prefill the input itself, or the dequantized prompt under force_quant; in decode the history before
     * this step's flush concatenated with the new tokens). Views stay valid until the next call on this cache.
     */
    KvPair update(int layer, KvView keys, KvView values);

    /** Exactly the bytes of codes, parameters and residual buffers the cache holds now. */
    long bytesHeld();

    /** Bytes a float16 cache of the same tokens would hold. */
    long bytesFp16();

    /**
     * The layer as stored (quantized blocks and residual), for placement device; caches that cannot be mirrored where
     * the model runs (full precision, policy kvtuner) refuse.
     */
    /**
     * Makes room for {@code tokens} tokens per layer at once, so that a run that knows its length grows no buffer on
     * the way (a growing buffer copies what it holds). A hint: caches whose memory is bounded ignore it.
     */
    default void reserve(int tokens) {
    }

    default StoredHistory stored(int layer) {
        throw new dev.kvq.KvqException(dev.kvq.ErrorCode.UNSUPPORTED, getClass().getSimpleName()
                + " cannot be kept where the model runs; use placement host");
    }

    /** Frees the cache's memory; idempotent. */
    @Override
    void close();

    /** Keys and values of one layer. */
    record KvPair(KvView keys, KvView values) {
    }
}
