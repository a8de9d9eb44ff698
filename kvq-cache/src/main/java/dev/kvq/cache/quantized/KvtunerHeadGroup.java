package dev.kvq.cache.quantized;

import dev.kvq.spi.Quantizer;
import dev.kvq.tensor.KvView;

/**
 * Policy {@code kvtuner}: {@code FlexibleQuantizedCache.update} step for step.
 *
 * <ul>
 *   <li>Prefill without force_quant quantizes the whole prompt and returns the input; the residual becomes the
 *       reference's 1-D placeholder.</li>
 *   <li>Prefill with force_quant and R &gt; 0 quantizes tokens {@code [0, T - T mod R)} and keeps the rest in
 *       full precision, except that when {@code T mod R == 0} the reference's {@code [:-0]} slice quantizes
 *       nothing (its defect, reproduced here only); R = 0 quantizes everything. It returns the dequantized
 *       prompt.</li>
 *   <li>Decode returns {@code dequant(Q) ++ F ++ new}; if F is not the placeholder and {@code len(F) + 1 >= R},
 *       that whole sequence is quantized again as the new Q (re-quantizing dequantized history) and F becomes
 *       the placeholder; otherwise the new tokens join F.</li>
 * </ul>
 */
final class KvtunerHeadGroup extends HeadGroup {
    private final int residualLength;
    private final boolean forceQuant;
    /** Holds the quantized blocks; each flush replaces them, so their memory is reused, not reallocated. */
    private final ReusableMemory blockMemory = new ReusableMemory();
    /** The reference's 1-D empty residual, which is never flushed and concatenates as nothing. */
    private boolean placeholder;

    KvtunerHeadGroup(int heads, int headDim, Quantizer keyQuantizer, Quantizer valueQuantizer, int residualLength,
                     boolean forceQuant, boolean halfScales) {
        super(heads, headDim, keyQuantizer, valueQuantizer, Math.max(residualLength, 1), halfScales);
        this.residualLength = residualLength;
        this.forceQuant = forceQuant;
    }

    @Override
    void add(KvView keys, KvView values, KvView outKeys, KvView outValues, Scratch scratch) {
        int fresh = keys.tokens();
        if (!initialized) {
            initialized = true;
            prefill(keys, values, outKeys, outValues);
            return;
        }
        int history = length();
        boolean flush = !placeholder && keyResidual.tokens() + 1 >= residualLength;
        if (!flush) {
            if (outKeys != null) {
                materialize(outKeys.tokens(0, history), outValues.tokens(0, history));
                keys.copyTo(outKeys.tokens(history, history + fresh));
                values.copyTo(outValues.tokens(history, history + fresh));
            }
            keyResidual.append(keys);
            valueResidual.append(values);
            placeholder = false;
            return;
        }
        KvView allKeys;
        KvView allValues;
        if (outKeys != null) {
            allKeys = outKeys;
            allValues = outValues;
        } else {
            KvView[] pair = scratch.pair(heads, history + fresh, headDim);
            allKeys = pair[0];
            allValues = pair[1];
        }
        materialize(allKeys.tokens(0, history), allValues.tokens(0, history));
        keys.copyTo(allKeys.tokens(history, history + fresh));
        values.copyTo(allValues.tokens(history, history + fresh));
        replaceQuantized(allKeys, allValues);
        keyResidual.clear();
        valueResidual.clear();
        placeholder = true;
    }

    private void prefill(KvView keys, KvView values, KvView outKeys, KvView outValues) {
        int t = keys.tokens();
        if (!forceQuant) {
            replaceQuantized(keys, values);
            placeholder = true;
            if (outKeys != null) {
                keys.copyTo(outKeys);
                values.copyTo(outValues);
            }
            return;
        }
        if (residualLength > 0) {
            int remainder = t % residualLength;
            // The reference slices [:-k] and [-k:]; with k == 0 these are [:0] (nothing) and [0:] (everything).
            int quantized = remainder == 0 ? 0 : t - remainder;
            replaceQuantized(keys.tokens(0, quantized), values.tokens(0, quantized));
            keyResidual.append(keys.tokens(quantized, t));
            valueResidual.append(values.tokens(quantized, t));
            placeholder = false;
        } else {
            replaceQuantized(keys, values);
            placeholder = true;
        }
        if (outKeys != null) {
            materialize(outKeys, outValues);
        }
    }

    /** Replaces the quantized blocks by {@code keys}/{@code values} quantized; they never lie in the blocks' memory. */
    private void replaceQuantized(KvView keys, KvView values) {
        keyBlocks.clear();
        valueBlocks.clear();
        blockMemory.reset();
        if (keys.tokens() > 0) {
            keyBlocks.add(quantize(keyQuantizer, keys, blockMemory));
            valueBlocks.add(quantize(valueQuantizer, values, blockMemory));
        }
        quantizedTokens = keys.tokens();
    }

    @Override
    public void close() {
        super.close();
        blockMemory.close();
    }
}
