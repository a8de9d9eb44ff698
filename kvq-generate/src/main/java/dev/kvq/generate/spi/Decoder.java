package dev.kvq.generate.spi;

import dev.kvq.generate.model.ModelConfig;

/**
 * A loaded decoder: one forward pass over new tokens given the past K/V, returning logits and the new tokens' K/V.
 * Not thread-safe. The past K/V always come from kvq's cache ({@link PastBuffers}), never from the runtime's own
 * state, so every runtime sees the same (possibly quantized) history.
 */
public interface Decoder extends AutoCloseable {
    ModelConfig config();

    /** The device the decoder runs on, as the runtime reports it ({@code cpu}, {@code cuda:0}). */
    String device();

    /**
     * Buffers for the past K/V of a step of {@code batch} sequences over {@code pastLength} positions, in memory the
     * runtime reads without copying. Valid until the next call.
     */
    PastBuffers past(int batch, int pastLength);

    /** Runs one step. The returned step is valid until the next forward or close. */
    Step forward(StepInput input);

    /**
     * The most attention scores one step may compute ({@code rows x heads x new tokens x positions}); a feed that
     * would need more is run in chunks of new tokens. Unbounded unless the runtime indexes tensors with 32-bit
     * integers (ONNX Runtime's CUDA provider, where a larger step fails with an illegal memory access).
     */
    default long maxAttentionScores() {
        return Long.MAX_VALUE;
    }

    /** Whether the model takes and returns K/V in float16 (kvq converts at the boundary). */
    default boolean halfKv() {
        return false;
    }

    /**
     * A variant of this decoder that reads a quantized history in place, laid out as {@code layout} (placement
     * {@code device}); made once per layout and closed with this decoder. Runtimes that cannot rewrite their model
     * refuse.
     */
    default QuantizedDecoder quantized(QuantizedPastLayout layout) {
        throw new dev.kvq.KvqException(dev.kvq.ErrorCode.UNSUPPORTED, "placement device needs a runtime that reads the "
                + "quantized cache in place, and this one (" + getClass().getSimpleName() + ") cannot: use runtime onnx "
                + "(--runtime onnx) or placement host (--placement host)");
    }

    @Override
    void close();
}
