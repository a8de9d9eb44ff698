package dev.kvq.cache.quantized;

import dev.kvq.spi.PackedBlock;
import dev.kvq.spi.Quantizer;
import dev.kvq.tensor.KvView;
import java.lang.foreign.SegmentAllocator;
import java.util.ArrayList;
import java.util.List;

/**
 * The K/V of the heads of one layer that share one precision: all heads in per-layer mode, one head in
 * per-head mode (as the reference quantizes each head separately there). Holds quantized blocks and the
 * full-precision residual; the policy decides when tokens move from one to the other.
 */
abstract sealed class HeadGroup implements AutoCloseable permits KvtunerHeadGroup, AppendHeadGroup {
    final int heads;
    final int headDim;
    final Quantizer keyQuantizer;
    final Quantizer valueQuantizer;
    final List<PackedBlock> keyBlocks = new ArrayList<>();
    final List<PackedBlock> valueBlocks = new ArrayList<>();
    final ResidualBuffer keyResidual;
    final ResidualBuffer valueResidual;
    final boolean halfScales;
    int quantizedTokens;
    boolean initialized;

    HeadGroup(int heads, int headDim, Quantizer keyQuantizer, Quantizer valueQuantizer, int residualCapacity,
              boolean halfScales) {
        this.halfScales = halfScales;
        this.heads = heads;
        this.headDim = headDim;
        this.keyQuantizer = keyQuantizer;
        this.valueQuantizer = valueQuantizer;
        this.keyResidual = new ResidualBuffer(heads, headDim, residualCapacity);
        this.valueResidual = new ResidualBuffer(heads, headDim, residualCapacity);
    }

    int length() {
        return quantizedTokens + keyResidual.tokens();
    }

    /**
     * Adds new tokens. When {@code outKeys}/{@code outValues} are non-null ({@code length() + new tokens} long)
     * they receive what KVTuner's {@code update} returns for attention. {@code scratch} is working memory.
     */
    abstract void add(KvView keys, KvView values, KvView outKeys, KvView outValues, Scratch scratch);

    /** Quantizes with {@code q}, rounding scales and zeros to float16 where the cache holds them so. */
    final PackedBlock quantize(Quantizer q, KvView data, SegmentAllocator allocator) {
        PackedBlock block = q.quantize(data, allocator);
        if (halfScales) {
            block.roundParamsToHalf();
        }
        return block;
    }

    /**
     * {@link #quantize} for one token, written into token {@code at} of {@code into} ({@link
     * Quantizer#quantizeToken}).
     */
    final void quantizeToken(Quantizer q, KvView token, PackedBlock into, int at, SegmentAllocator scratch) {
        q.quantizeToken(token, into, at, scratch);
        if (halfScales) {
            into.roundTokenParamsToHalf(at);
        }
    }

    /** Writes quantized history, then residual, into views of {@code length()} tokens. */
    void materialize(KvView keys, KvView values) {
        materializeResidual(keys, values, materializeBlocks(keys, values));
    }

    /** Writes the quantized blocks from token 0; returns the tokens written. */
    final int materializeBlocks(KvView keys, KvView values) {
        int t = 0;
        for (int i = 0; i < keyBlocks.size(); i++) {
            PackedBlock kb = keyBlocks.get(i);
            kb.dequantize(keys.tokens(t, t + kb.tokens()));
            valueBlocks.get(i).dequantize(values.tokens(t, t + kb.tokens()));
            t += kb.tokens();
        }
        return t;
    }

    /** Copies the residual to tokens {@code [t, t + residual)}. */
    final void materializeResidual(KvView keys, KvView values, int t) {
        int r = keyResidual.tokens();
        keyResidual.view().copyTo(keys.tokens(t, t + r));
        valueResidual.view().copyTo(values.tokens(t, t + r));
    }

    /** Visits the blocks holding tokens at or after {@code fromToken} (see {@link dev.kvq.cache.StoredHistory}). */
    void blocks(boolean keys, int fromToken, dev.kvq.cache.StoredHistory.BlockVisitor visitor) {
        List<PackedBlock> blocks = keys ? keyBlocks : valueBlocks;
        // a device sync asks for the newest tokens every step: find them from the end, not by walking the history
        int i = blocks.size();
        int start = blockedTokens();
        while (i > 0 && start > fromToken) {
            i--;
            start -= blocks.get(i).tokens();
        }
        for (; i < blocks.size(); i++) {
            PackedBlock b = blocks.get(i);
            if (start + b.tokens() > fromToken) {
                visitor.block(b, start, b.tokens());
            }
            start += b.tokens();
        }
    }

    /** Tokens held in {@link #keyBlocks} (each list holds the same). */
    int blockedTokens() {
        return quantizedTokens;
    }

    long bytesHeld() {
        long bytes = keyResidual.byteSize() + valueResidual.byteSize();
        for (PackedBlock b : keyBlocks) {
            bytes += b.byteSize(halfScales);
        }
        for (PackedBlock b : valueBlocks) {
            bytes += b.byteSize(halfScales);
        }
        return bytes;
    }

    int blockCount() {
        return keyBlocks.size();
    }

    @Override
    public void close() {
        keyResidual.close();
        valueResidual.close();
        keyBlocks.clear();
        valueBlocks.clear();
    }
}
