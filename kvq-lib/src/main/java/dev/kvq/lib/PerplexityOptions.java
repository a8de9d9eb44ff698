package dev.kvq.lib;

/**
 * How text is scored: cut into windows of {@code window} tokens, each read with its first {@code prefill} tokens as the
 * prompt and every later token predicted by a decode step through the cache; {@code batch} windows run together. With
 * {@code compareFullPrecision} a float32 cache reads the same windows beside it, which gives the KL divergence and
 * top-1 agreement of the two next-token distributions.
 */
public record PerplexityOptions(int window, int prefill, int batch, boolean compareFullPrecision) {
    /** Windows of 256 tokens, 32 of them prompt, 8 at a time, beside full precision. */
    public static PerplexityOptions defaults() {
        return new PerplexityOptions(256, 32, 8, true);
    }

    public PerplexityOptions withWindow(int tokens, int prefillTokens) {
        return new PerplexityOptions(tokens, prefillTokens, batch, compareFullPrecision);
    }

    public PerplexityOptions withoutFullPrecision() {
        return new PerplexityOptions(window, prefill, batch, false);
    }
}
