package dev.kvq.generate.spi;

/**
 * One forward step over a quantized past held in device memory.
 *
 * @param batch sequences
 * @param tokens new tokens per sequence (left-padded)
 * @param quantizedLength {@code T}: tokens of quantized storage every run presents (padding included)
 * @param residualLength residual positions every layer presents ({@link StoredLayer#residualCapacity()})
 * @param inputIds {@code [batch, tokens]}
 * @param newTokenMask the new tokens' part of the attention mask, {@code [batch, tokens]} (0 for left padding)
 * @param quantizedTokens per sequence, how many quantized positions are real (they come first)
 * @param residualTokens per sequence, how many residual positions are real (they come first); the model attends to
 *     exactly these, so nothing a step hands over grows with the history
 * @param positionIds {@code [batch, tokens]}
 * @param past device addresses of the past tensors in {@link #tensorOrder} order; their shapes follow from the
 *     layout, {@code batch} and {@code quantizedLength}
 */
public record QuantizedStep(int batch, int tokens, int quantizedLength, int residualLength, long[] inputIds,
                            long[] newTokenMask, long[] quantizedTokens, long[] residualTokens, long[] positionIds,
                            long[] past) {
    /**
     * The order of {@link #past}: for each layer, for keys then values, for each run: codes, scales, zeros; then, when
     * the layer has a residual, the keys' residual and the values' residual.
     */
    public static String tensorOrder() {
        return "layer > (keys, values) > run > (codes, scales, zeros), then residual keys, residual values";
    }
}
