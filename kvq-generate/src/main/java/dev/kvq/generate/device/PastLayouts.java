package dev.kvq.generate.device;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.cache.KvCache;
import dev.kvq.cache.StoredHistory;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.StoredLayer;
import dev.kvq.generate.spi.StoredRun;
import dev.kvq.spi.BitPacking;
import dev.kvq.spi.PackedBlock;
import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.List;

/**
 * Derives the device form of a cache from the blocks its quantizers make: for each head group, bits, code form and
 * which way its groups run. Groups that span whole rows or whole columns of a block (quanto's int8) are stored per row
 * or per flushed run of a column, each with its group's parameters. A backend whose groups fit neither a token's
 * channels nor a channel's tokens (hqq axis 0) or whose widths the device does not decode is refused with a message,
 * before any work.
 */
public final class PastLayouts {
    private PastLayouts() {
    }

    /**
     * The layout of {@code cache}'s configuration; a full-precision cache is stored raw in the model's K/V dtype
     * ({@code halfKv}).
     */
    public static QuantizedPastLayout of(KvCache cache, int layers, int kvHeads, int headDim, boolean halfKv) {
        List<StoredLayer> stored = new ArrayList<>();
        try (Arena arena = Arena.ofConfined()) {
            for (int l = 0; l < layers; l++) {
                StoredHistory history = cache.stored(l);
                if (history.isRaw()) {
                    StoredRun raw = StoredRun.raw(kvHeads, halfKv, headDim);
                    stored.add(new StoredLayer(List.of(raw), List.of(raw), 0));
                    continue;
                }
                int residualLength = history.residualCapacity();
                boolean halfParams = history.halfParams();
                List<StoredRun> keys = new ArrayList<>();
                List<StoredRun> values = new ArrayList<>();
                int head = 0;
                for (int g = 0; g < history.groups(); g++) {
                    int probeTokens = residualLength > 0 ? residualLength : 16;
                    keys.add(run(history.probe(g, true, probeTokens, arena), head, halfParams, residualLength, l,
                            "keys"));
                    values.add(run(history.probe(g, false, probeTokens, arena), head, halfParams, residualLength, l,
                            "values"));
                    head += history.groupHeads(g);
                }
                if (head != kvHeads) {
                    throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "layer " + l + " groups cover " + head
                            + " heads, the model has " + kvHeads);
                }
                stored.add(new StoredLayer(keys, values, residualLength));
            }
        }
        return new QuantizedPastLayout(kvHeads, headDim, stored);
    }

    private static StoredRun run(PackedBlock b, int firstHead, boolean halfParams, int residualLength, int layer,
                                 String role) {
        String where = role + " of layer " + layer;
        int bits = b.bits();
        if (bits != 2 && bits != 4 && bits != 8) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "placement device decodes 2-, 4- and 8-bit codes; the "
                    + where + " are " + bits + "-bit. Use placement host for this configuration");
        }
        int dim = b.headDim();
        if (bits != 8 && dim % BitPacking.chunkCodes(bits) != 0) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "placement device packs " + bits + "-bit rows in chunks of "
                    + BitPacking.chunkCodes(bits) + " codes, but head_dim is " + dim + "; use placement host");
        }
        int g = b.groupSize();
        int tokens = b.tokens();
        if (dim % g == 0 && tilesInOneGroup(b, 1, g)) {
            return new StoredRun(firstHead, b.heads(), bits, StoredRun.GroupAxis.TOKEN, g, b.form(), b.codeOffset(),
                    halfParams);
        }
        if (tokens % g == 0 && tilesInOneGroup(b, g, 1)) {
            return new StoredRun(firstHead, b.heads(), bits, StoredRun.GroupAxis.CHANNEL, g, b.form(), b.codeOffset(),
                    halfParams);
        }
        // Groups wider than a row or a column (quanto's int8: one scale per block on axis 0, per channel across heads
        // on axis -1) hold whole rows or whole columns of every block: each row, or each flushed run of tokens of a
        // column, is given its group's parameters, which decodes to the same values at some more parameter bytes.
        if (tilesInOneGroup(b, 1, dim)) {
            return new StoredRun(firstHead, b.heads(), bits, StoredRun.GroupAxis.TOKEN, dim, b.form(), b.codeOffset(),
                    halfParams);
        }
        // blocks hold multiples of residual_length tokens (policy append), the probe exactly that many
        if (residualLength > 0 && tokens == residualLength && tilesInOneGroup(b, tokens, 1)) {
            return new StoredRun(firstHead, b.heads(), bits, StoredRun.GroupAxis.CHANNEL, residualLength, b.form(),
                    b.codeOffset(), halfParams);
        }
        throw new KvqException(ErrorCode.UNSUPPORTED, "the " + where + " are quantized in groups of " + g + " in "
                + b.order() + " order, which are neither runs of one token's channels nor of one channel's tokens, "
                + "so the model cannot decode them in place; use another axis or backend, or placement host");
    }

    /**
     * Whether every tile of {@code tileTokens} consecutive tokens by {@code tileChannels} consecutive channels of each
     * head (tiles that divide the block) lies in one of the block's groups.
     */
    private static boolean tilesInOneGroup(PackedBlock b, int tileTokens, int tileChannels) {
        int g = b.groupSize();
        for (int h = 0; h < b.heads(); h++) {
            for (int t0 = 0; t0 < b.tokens(); t0 += tileTokens) {
                for (int d0 = 0; d0 < b.headDim(); d0 += tileChannels) {
                    long group = CanonicalRows.codeIndex(b, h, t0, d0) / g;
                    for (int t = t0; t < t0 + tileTokens; t++) {
                        for (int d = d0; d < d0 + tileChannels; d++) {
                            if (CanonicalRows.codeIndex(b, h, t, d) / g != group) {
                                return false;
                            }
                        }
                    }
                }
            }
        }
        return true;
    }
}
