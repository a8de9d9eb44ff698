package dev.kvq.cache.quantized;

import dev.kvq.spi.PackedBlock;
import dev.kvq.spi.Quantizer;
import dev.kvq.tensor.KvView;
import java.lang.foreign.Arena;

/**
 * Policy {@code append}: new tokens join the full-precision residual; every time it holds {@code R} tokens or
 * more, the largest multiple of {@code R} of its oldest tokens is quantized once, as one block, and appended to
 * the quantized store. Already quantized blocks are never touched again, so each decode step costs the same and
 * history does not drift. With R = 0 every new token is quantized at once; where the backend's blocks allow it
 * ({@link PackedBlock#rowCopyable}), single tokens are written in place into a tail block with room for
 * {@value #TAIL_TOKENS}, so a long generation leaves a few large blocks rather than one block per token (each block
 * costs a call per head at every step).
 */
final class AppendHeadGroup extends HeadGroup {
    static final int TAIL_TOKENS = 16;

    private final int residualLength;
    private final Arena blockArena = Arena.ofShared();
    /** The tail blocks being filled (null when none), their tokens, and whether the backend's blocks allow one. */
    private PackedBlock keyTail;
    private PackedBlock valueTail;
    private int tailTokens;
    private boolean tailUnsupported;
    /** Where a single token is quantized before its rows are copied into the tail blocks. */
    private final ReusableMemory tokenMemory = new ReusableMemory();

    AppendHeadGroup(int heads, int headDim, Quantizer keyQuantizer, Quantizer valueQuantizer, int residualLength,
                    boolean halfScales) {
        super(heads, headDim, keyQuantizer, valueQuantizer, Math.max(residualLength, 1), halfScales);
        this.residualLength = residualLength;
    }

    @Override
    void add(KvView keys, KvView values, KvView outKeys, KvView outValues, Scratch scratch) {
        initialized = true;
        if (residualLength == 0) {
            if (tailUnsupported || (tailTokens == 0 && keys.tokens() >= TAIL_TOKENS)) {
                appendBlock(keys, values);
            } else {
                for (int t = 0; t < keys.tokens(); t++) {
                    appendToTail(keys.tokens(t, t + 1), values.tokens(t, t + 1));
                }
            }
        } else if (keyResidual.tokens() == 0 && keys.tokens() >= residualLength) {
            // A long input (prefill) goes straight to quantized blocks without passing through the residual.
            int whole = keys.tokens() - keys.tokens() % residualLength;
            appendBlock(keys.tokens(0, whole), values.tokens(0, whole));
            keyResidual.append(keys.tokens(whole, keys.tokens()));
            valueResidual.append(values.tokens(whole, values.tokens()));
        } else {
            keyResidual.append(keys);
            valueResidual.append(values);
            int r = keyResidual.tokens();
            if (r >= residualLength) {
                int whole = r - r % residualLength;
                appendBlock(keyResidual.view().tokens(0, whole), valueResidual.view().tokens(0, whole));
                keyResidual.dropFirst(whole);
                valueResidual.dropFirst(whole);
            }
        }
        if (outKeys != null) {
            materialize(outKeys, outValues);
        }
    }

    /** Quantizes one token and writes it into the tail, starting a tail block when there is none. */
    private void appendToTail(KvView key, KvView value) {
        tokenMemory.reset();
        if (keyTail == null) {
            // the first token shows whether the backend's blocks allow a tail, and what the tail looks like
            PackedBlock k = quantize(keyQuantizer, key, tokenMemory);
            PackedBlock v = quantize(valueQuantizer, value, tokenMemory);
            if (!k.rowCopyable() || !v.rowCopyable()) {
                tailUnsupported = true;
                appendBlock(key, value);
                return;
            }
            keyTail = emptyLike(k);
            valueTail = emptyLike(v);
            keyTail.copyToken(k, 0, 0);
            valueTail.copyToken(v, 0, 0);
        } else {
            // the backend writes the token's rows in place (or through scratch memory, by default)
            quantizeToken(keyQuantizer, key, keyTail, tailTokens, tokenMemory);
            quantizeToken(valueQuantizer, value, valueTail, tailTokens, tokenMemory);
        }
        tailTokens++;
        quantizedTokens++;
        if (tailTokens == TAIL_TOKENS) {
            keyBlocks.add(keyTail);
            valueBlocks.add(valueTail);
            keyTail = null;
            valueTail = null;
            tailTokens = 0;
        }
    }

    private PackedBlock emptyLike(PackedBlock b) {
        return PackedBlock.allocate(blockArena, b.bits(), b.order(), b.form(), b.codeOffset(), heads, TAIL_TOKENS,
                headDim, b.groupSize());
    }

    @Override
    void materialize(KvView keys, KvView values) {
        int t = materializeBlocks(keys, values);
        if (tailTokens > 0) {
            keyTail.dequantizeTokens(keys.tokens(t, t + tailTokens), tailTokens);
            valueTail.dequantizeTokens(values.tokens(t, t + tailTokens), tailTokens);
            t += tailTokens;
        }
        materializeResidual(keys, values, t);
    }

    @Override
    int blockedTokens() {
        return quantizedTokens - tailTokens; // the tail being filled is not in the lists yet
    }

    @Override
    void blocks(boolean keys, int fromToken, dev.kvq.cache.StoredHistory.BlockVisitor visitor) {
        super.blocks(keys, fromToken, visitor);
        if (tailTokens > 0 && quantizedTokens > fromToken) {
            visitor.block(keys ? keyTail : valueTail, quantizedTokens - tailTokens, tailTokens);
        }
    }

    @Override
    long bytesHeld() {
        long tail = keyTail == null ? 0 : keyTail.byteSize(halfScales) + valueTail.byteSize(halfScales);
        return super.bytesHeld() + tail;
    }

    @Override
    int blockCount() {
        return super.blockCount() + (tailTokens > 0 ? 1 : 0);
    }

    private void appendBlock(KvView keys, KvView values) {
        keyBlocks.add(quantize(keyQuantizer, keys, blockArena));
        valueBlocks.add(quantize(valueQuantizer, values, blockArena));
        quantizedTokens += keys.tokens();
    }

    @Override
    public void close() {
        super.close();
        keyTail = null;
        valueTail = null;
        tailTokens = 0;
        tokenMemory.close();
        if (blockArena.scope().isAlive()) {
            blockArena.close();
        }
    }
}
