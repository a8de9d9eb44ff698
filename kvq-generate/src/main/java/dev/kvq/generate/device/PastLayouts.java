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
        if (dim % g == 0 && groupsAlongChannels(b, g)) {
            return new StoredRun(firstHead, b.heads(), bits, StoredRun.GroupAxis.TOKEN, g, b.form(), b.codeOffset(),
                    halfParams);
        }
        if (b.tokens() % g == 0 && groupsAlongTokens(b, g)) {
            return new StoredRun(firstHead, b.heads(), bits, StoredRun.GroupAxis.CHANNEL, g, b.form(), b.codeOffset(),
                    halfParams);
        }
        // Groups wider than a row or a column (quanto's int8: one scale per block on axis 0, per channel across heads
        // on axis -1) hold whole rows or whole columns of every block: each row, or each flushed run of tokens of a
        // column, is given its group's parameters, which decodes to the same values at some more parameter bytes.
        if (rowsWithinGroups(b, g)) {
            return new StoredRun(firstHead, b.heads(), bits, StoredRun.GroupAxis.TOKEN, dim, b.form(), b.codeOffset(),
                    halfParams);
        }
        // blocks hold multiples of residual_length tokens (policy append), the probe exactly that many
        if (residualLength > 0 && b.tokens() == residualLength && columnsWithinGroups(b, g)) {
            return new StoredRun(firstHead, b.heads(), bits, StoredRun.GroupAxis.CHANNEL, residualLength, b.form(),
                    b.codeOffset(), halfParams);
        }
        throw new KvqException(ErrorCode.UNSUPPORTED, "the " + where + " are quantized in groups of " + g + " in "
                + b.order() + " order, which are neither runs of one token's channels nor of one channel's tokens, "
                + "so the model cannot decode them in place; use another axis or backend, or placement host");
    }

    /** Whether each token's row of each head lies in one group. */
    private static boolean rowsWithinGroups(PackedBlock b, int g) {
        for (int h = 0; h < b.heads(); h++) {
            for (int t = 0; t < b.tokens(); t++) {
                long group = CanonicalRows.codeIndex(b, h, t, 0) / g;
                for (int d = 1; d < b.headDim(); d++) {
                    if (CanonicalRows.codeIndex(b, h, t, d) / g != group) {
                        return false;
                    }
                }
            }
        }
        return true;
    }

    /** Whether each channel's column of each head, over all the block's tokens, lies in one group. */
    private static boolean columnsWithinGroups(PackedBlock b, int g) {
        for (int h = 0; h < b.heads(); h++) {
            for (int d = 0; d < b.headDim(); d++) {
                long group = CanonicalRows.codeIndex(b, h, 0, d) / g;
                for (int t = 1; t < b.tokens(); t++) {
                    if (CanonicalRows.codeIndex(b, h, t, d) / g != group) {
                        return false;
                    }
                }
            }
        }
        return true;
    }

    private static boolean groupsAlongChannels(PackedBlock b, int g) {
        for (int h = 0; h < b.heads(); h++) {
            for (int t = 0; t < b.tokens(); t++) {
                for (int start = 0; start < b.headDim(); start += g) {
                    long group = CanonicalRows.codeIndex(b, h, t, start) / g;
                    for (int d = start + 1; d < start + g; d++) {
                        if (CanonicalRows.codeIndex(b, h, t, d) / g != group) {
                            return false;
                        }
                    }
                }
            }
        }
        return true;
    }

    private static boolean groupsAlongTokens(PackedBlock b, int g) {
        for (int h = 0; h < b.heads(); h++) {
            for (int d = 0; d < b.headDim(); d++) {
                for (int start = 0; start < b.tokens(); start += g) {
                    long group = CanonicalRows.codeIndex(b, h, start, d) / g;
                    for (int t = start + 1; t < start + g; t++) {
                        if (CanonicalRows.codeIndex(b, h, t, d) / g != group) {
                            return false;
                        }
                    }
                }
            }
        }
        return true;
    }
}
