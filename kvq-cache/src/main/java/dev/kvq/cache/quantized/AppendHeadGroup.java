package dev.kvq.cache.quantized;

import dev.kvq.spi.Quantizer;
import dev.kvq.tensor.KvView;
import java.lang.foreign.Arena;

/**
 * Policy {@code append}: new tokens join the full-precision residual; every time it holds {@code R} tokens or
 * more, the largest multiple of {@code R} of its oldest tokens is quantized once, as one block, and appended to
 * the quantized store. Already quantized blocks are never touched again, so each decode step costs the same and
 * history does not drift. With R = 0 every new token is quantized at once.
 */
final class AppendHeadGroup extends HeadGroup {
    private final int residualLength;
    private final Arena blockArena = Arena.ofShared();

    AppendHeadGroup(int heads, int headDim, Quantizer keyQuantizer, Quantizer valueQuantizer, int residualLength) {
        super(heads, headDim, keyQuantizer, valueQuantizer, Math.max(residualLength, 1));
        this.residualLength = residualLength;
    }

    @Override
    void add(KvView keys, KvView values, KvView outKeys, KvView outValues, Scratch scratch) {
        initialized = true;
        if (residualLength == 0) {
            appendBlock(keys, values);
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

    private void appendBlock(KvView keys, KvView values) {
        keyBlocks.add(keyQuantizer.quantize(keys, blockArena));
        valueBlocks.add(valueQuantizer.quantize(values, blockArena));
        quantizedTokens += keys.tokens();
    }

    @Override
    public void close() {
        super.close();
        if (blockArena.scope().isAlive()) {
            blockArena.close();
        }
    }
}
