package dev.kvq.lib;

/**
 * What quantization costs on a text.
 *
 * @param perplexity through the configured cache
 * @param fullPrecisionPerplexity the same windows through a float32 cache, or null when not compared
 * @param meanKl mean KL(full precision || cache) of the next-token distributions, or null when not compared
 * @param top1Agreement share of positions where both caches rank the same token first, or null when not compared
 * @param tokens scored tokens
 * @param windows windows read
 * @param kvBytesPerWindow the most bytes one window's cache held
 */
public record Perplexity(double perplexity, Double fullPrecisionPerplexity, Double meanKl, Double top1Agreement,
                         long tokens, int windows, long kvBytesPerWindow) {
}
