package dev.kvq.generate.spi;

/**
 * One forward step of {@code batch} sequences: {@code tokens} new tokens each (left-padded), after
 * {@code pastLength} past positions (left-padded per sequence through the attention mask).
 *
 * @param inputIds {@code [batch, tokens]} row-major
 * @param attentionMask {@code [batch, pastLength + tokens]}, 1 = attend
 * @param positionIds {@code [batch, tokens]}
 * @param past the filled past buffers
 */
public record StepInput(int batch, int tokens, int pastLength, long[] inputIds, long[] attentionMask, long[] positionIds,
                        PastBuffers past) {
}
