package dev.kvq.generate.spi;

import java.util.List;

/**
 * The form in which kvq hands a decoder its quantized history under placement {@code device}. The decoder's graph
 * reads, per layer, the tensors its {@link StoredLayer} describes and dequantizes them itself; the past it attends
 * to is, per layer, the runs concatenated along heads ({@code [B, kvHeads, T, headDim]}) followed by the residual
 * along tokens: {@code T + residualCapacity} positions, of which the attention mask marks the real ones. Per step
 * the decoder returns only the new tokens' K/V and the logits.
 */
public record QuantizedPastLayout(int kvHeads, int headDim, List<StoredLayer> layers) {
    public QuantizedPastLayout {
        layers = List.copyOf(layers);
    }

    /** Graph input names of run {@code run} of layer {@code layer}'s keys ({@code "key"}) or values ({@code "value"}). */
    public static String codesName(int layer, String kind, int run) {
        return "kvq." + layer + "." + kind + "." + run + ".codes";
    }

    public static String scalesName(int layer, String kind, int run) {
        return "kvq." + layer + "." + kind + "." + run + ".scales";
    }

    public static String zerosName(int layer, String kind, int run) {
        return "kvq." + layer + "." + kind + "." + run + ".zeros";
    }

    public static String residualName(int layer, String kind) {
        return "kvq." + layer + "." + kind + ".residual";
    }

    /** Graph output name of the new tokens' keys or values of a layer, {@code [B, kvHeads, tokens, headDim]}. */
    public static String newName(int layer, String kind) {
        return "kvq." + layer + "." + kind + ".new";
    }
}
