package dev.kvq.cache;

import dev.kvq.spi.PackedBlock;
import dev.kvq.tensor.KvView;
import java.lang.foreign.SegmentAllocator;

/**
 * One layer of a quantized cache as it is stored, for a store that mirrors it where the model runs (placement
 * {@code device}). Heads form groups that share quantizers (every head under per-layer precision, one head each
 * under per-head precision); each group holds quantized blocks, oldest first, then a full-precision residual.
 * Quantized tokens never change once written (policy append), so a mirror copies each token once. Views are valid
 * until the cache changes.
 */
public interface StoredHistory {
    /** Tokens held in quantized blocks; the same in every group. */
    int quantizedTokens();

    /** The most tokens the residual holds between steps ({@code residual_length}). */
    int residualCapacity();

    /** Whether scales and zeros are held in float16 ({@code scale_dtype}). */
    boolean halfParams();

    /** Head groups of the layer. */
    int groups();

    /** KV heads in group {@code group}; groups cover the heads in order. */
    int groupHeads(int group);

    /**
     * Calls {@code visitor} for every block of the group's keys ({@code keys}) or values that holds tokens at or
     * after {@code fromToken}, oldest first.
     */
    void blocks(int group, boolean keys, int fromToken, BlockVisitor visitor);

    /** The group's full-precision residual, {@code [groupHeads, residualTokens, headDim]}. */
    KvView residual(int group, boolean keys);

    /**
     * Quantizes {@code tokens} tokens of sample data with the group's key or value quantizer, as the cache would, into
     * {@code allocator}: the block's form (bits, code order, groups) is what the group's blocks will have.
     */
    PackedBlock probe(int group, boolean keys, int tokens, SegmentAllocator allocator);

    /**
     * Whether the layer holds its history unquantized (a full-precision cache): then every token counts as stored,
     * {@link #raw(boolean)} gives it, and there are no blocks, residual or probe.
     */
    default boolean isRaw() {
        return false;
    }

    /** The whole history of a raw layer, {@code [kvHeads, tokens, headDim]} float32. */
    default KvView raw(boolean keys) {
        throw new dev.kvq.KvqException(dev.kvq.ErrorCode.UNSUPPORTED, "this layer is quantized, not raw");
    }

    /** Receives blocks. */
    @FunctionalInterface
    interface BlockVisitor {
        /**
         * @param block the block
         * @param firstToken index in the layer of the block's first token
         * @param filledTokens tokens of the block written so far (fewer than its capacity for a block being filled)
         */
        void block(PackedBlock block, int firstToken, int filledTokens);
    }
}
