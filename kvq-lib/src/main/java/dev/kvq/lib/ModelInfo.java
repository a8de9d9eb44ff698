package dev.kvq.lib;

/**
 * The opened model and where it runs.
 *
 * @param maxPositions the model's context length ({@code max_position_embeddings}), or 0 when config.json omits it
 * @param runtime the runtime's name ({@code onnx}, {@code djl})
 * @param device the device as the runtime reports it ({@code cpu}, {@code cuda:0})
 * @param cache the KV cache in words (backend, policy, bits, axes, group, residual; or full precision)
 * @param averageBits average KV bits per element of the cache, or 32 for full precision
 */
public record ModelInfo(String name, int layers, int kvHeads, int headDim, int vocabSize, int maxPositions,
                        String runtime, String device, String cache, double averageBits) {
}
