package dev.kvq.generate.spi;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.spi.BitPacking;
import java.util.List;

/**
 * The form in which kvq hands a decoder its quantized history under placement {@code device}. The decoder's graph
 * reads, per layer, the tensors its {@link StoredLayer} describes and dequantizes them itself; the past it attends
 * to is, per layer, the runs concatenated along heads ({@code [B, kvHeads, T, headDim]}) followed by the residual
 * along tokens: {@code T + residualCapacity} positions, of which the attention mask marks the real ones. Per step
 * the decoder returns only the new tokens' K/V and the logits.
 *
 * <p>{@code tokenBlock} is how many consecutive tokens of one sequence and head a run keeps side by side: with 1 its
 * rows are {@code [T, B, heads, ...]} ({@link StoredRun}); with a larger power of two, {@code [T / tokenBlock, B,
 * heads, tokenBlock, ...]} for codes, raw values and per-token parameters (parameters grouped along tokens stay one
 * row per group), and {@code T} is a multiple of it. The tensors keep their nominal shapes ({@code [T, B, heads,
 * ...]}); only the order of their rows changes. Attention that reads the codes itself wants blocks: a warp's lanes,
 * one token each, then read one stretch of memory instead of a scattered piece each.
 */
public record QuantizedPastLayout(int kvHeads, int headDim, List<StoredLayer> layers, int tokenBlock) {
    public QuantizedPastLayout {
        layers = List.copyOf(layers);
        requireTokenBlock(tokenBlock);
    }

    /** {@code tokens}, checked to be a token block: a power of two. */
    public static int requireTokenBlock(int tokens) {
        if (tokens < 1 || Integer.bitCount(tokens) != 1) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "a token block is a power of two, not " + tokens);
        }
        return tokens;
    }

    /** A layout whose rows are token-major, one token at a time ({@code tokenBlock} 1). */
    public QuantizedPastLayout(int kvHeads, int headDim, List<StoredLayer> layers) {
        this(kvHeads, headDim, layers, 1);
    }

    /**
     * Row of token {@code token} of sequence {@code sequence}, head {@code head} of a run of {@code heads} heads, in a
     * batch of {@code batch}: {@code [T, B, heads]} rows, or {@code [T / tokenBlock, B, heads, tokenBlock]}.
     */
    public static long row(int token, int tokenBlock, int batch, int sequence, int heads, int head) {
        return (((long) (token / tokenBlock) * batch + sequence) * heads + head) * tokenBlock + token % tokenBlock;
    }

    /** This layout with rows in blocks of {@code tokens} tokens. */
    public QuantizedPastLayout withTokenBlock(int tokens) {
        return new QuantizedPastLayout(kvHeads, headDim, layers, tokens);
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

    /**
     * Checks that the layout describes tensors a model can decode: runs that cover the heads in order, whole chunks of
     * packed codes, and one residual capacity for every layer (one attention mask covers them all).
     */
    public void check() {
        if (layers.isEmpty() || kvHeads < 1 || headDim < 1) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "a quantized past needs layers, heads and a head_dim: "
                    + this);
        }
        int residual = layers.getFirst().residualCapacity();
        for (int l = 0; l < layers.size(); l++) {
            StoredLayer stored = layers.get(l);
            if (stored.residualCapacity() != residual || residual < 0) {
                throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "layer " + l + " has a residual of "
                        + stored.residualCapacity() + " tokens and layer 0 one of " + residual + "; one attention mask "
                        + "covers every layer, so all residuals must have one capacity");
            }
            checkRuns(stored.keys(), "layer " + l + " keys");
            checkRuns(stored.values(), "layer " + l + " values");
        }
    }

    private void checkRuns(List<StoredRun> runs, String where) {
        int dim = headDim;
        int next = 0;
        for (StoredRun run : runs) {
            if (run.firstHead() != next) {
                throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, where + ": a run starts at head " + run.firstHead()
                        + " where head " + next + " was expected; runs must cover the heads in order");
            }
            next += run.heads();
            if (BitPacking.planar(run.bits()) && dim % BitPacking.chunkCodes(run.bits()) != 0) {
                throw new KvqException(ErrorCode.UNSUPPORTED, where + ": " + run.bits() + "-bit codes are packed in "
                        + "chunks of " + BitPacking.chunkCodes(run.bits()) + " channels, which head_dim " + dim
                        + " does not fill; use 8 bits or placement host for this model");
            }
            if (run.axis() == StoredRun.GroupAxis.TOKEN && dim % run.groupSize() != 0) {
                throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, where + ": per-token groups of " + run.groupSize()
                        + " do not divide head_dim " + dim);
            }
        }
        if (next != kvHeads) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, where + ": runs cover " + next + " heads of "
                    + kvHeads);
        }
    }
}
