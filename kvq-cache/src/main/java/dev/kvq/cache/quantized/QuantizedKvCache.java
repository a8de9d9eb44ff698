package dev.kvq.cache.quantized;

import dev.kvq.cache.StoredHistory;
import dev.kvq.spi.PackedBlock;
import java.lang.foreign.SegmentAllocator;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.cache.KvCache;
import dev.kvq.config.CachePolicy;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.ModelShape;
import dev.kvq.config.PrecisionPlan;
import dev.kvq.tensor.KvView;

/**
 * The quantized KV cache of one sequence. Per layer, one {@link HeadGroup} for all KV heads (per-layer
 * precision) or one per head (per-head precision, quantized head by head as the reference does). Not
 * thread-safe.
 */
public final class QuantizedKvCache implements KvCache {
    private final CacheSpec spec;
    private final ModelShape shape;
    private final HeadGroup[][] groups;
    private final Scratch scratch = new Scratch();
    private boolean closed;

    QuantizedKvCache(CacheSpec spec) {
        this.spec = spec;
        this.shape = spec.shape();
        KvQuantConfig c = spec.config();
        this.groups = new HeadGroup[shape.layers()][];
        for (int l = 0; l < shape.layers(); l++) {
            int perGroup = c.perHeadQuant() ? 1 : shape.kvHeads();
            HeadGroup[] layer = new HeadGroup[shape.kvHeads() / perGroup];
            for (int g = 0; g < layer.length; g++) {
                int head = g * perGroup;
                layer[g] = c.policy() == CachePolicy.KVTUNER
                        ? new KvtunerHeadGroup(perGroup, shape.headDim(), spec.keyQuantizer(l, head),
                                spec.valueQuantizer(l, head), c.residualLength(), c.forceQuant(), c.halfScales())
                        : new AppendHeadGroup(perGroup, shape.headDim(), spec.keyQuantizer(l, head),
                                spec.valueQuantizer(l, head), c.residualLength(), c.halfScales());
            }
            groups[l] = layer;
        }
    }

    public CacheSpec spec() {
        return spec;
    }

    @Override
    public PrecisionPlan plan() {
        return spec.plan();
    }

    @Override
    public int length(int layer) {
        checkLayer(layer);
        return groups[layer][0].length();
    }

    @Override
    public void append(int layer, KvView keys, KvView values) {
        checkInput(layer, keys, values);
        HeadGroup[] layerGroups = groups[layer];
        int perGroup = layerGroups[0].heads;
        for (int g = 0; g < layerGroups.length; g++) {
            int h = g * perGroup;
            layerGroups[g].add(keys.heads(h, h + perGroup), values.heads(h, h + perGroup), null, null, scratch);
        }
    }

    @Override
    public KvPair update(int layer, KvView keys, KvView values) {
        checkInput(layer, keys, values);
        HeadGroup[] layerGroups = groups[layer];
        int total = layerGroups[0].length() + keys.tokens();
        KvView[] out = scratch.pair(shape.kvHeads(), total, shape.headDim());
        int perGroup = layerGroups[0].heads;
        for (int g = 0; g < layerGroups.length; g++) {
            int h = g * perGroup;
            layerGroups[g].add(keys.heads(h, h + perGroup), values.heads(h, h + perGroup),
                    out[0].heads(h, h + perGroup), out[1].heads(h, h + perGroup), scratch);
        }
        return new KvPair(out[0], out[1]);
    }

    @Override
    public void materialize(int layer, KvView keys, KvView values) {
        checkOpen();
        checkLayer(layer);
        int length = length(layer);
        checkView("keys", keys, length);
        checkView("values", values, length);
        HeadGroup[] layerGroups = groups[layer];
        int perGroup = layerGroups[0].heads;
        for (int g = 0; g < layerGroups.length; g++) {
            int h = g * perGroup;
            layerGroups[g].materialize(keys.heads(h, h + perGroup), values.heads(h, h + perGroup));
        }
    }

    @Override
    public long bytesHeld() {
        long bytes = 0;
        for (HeadGroup[] layer : groups) {
            for (HeadGroup g : layer) {
                bytes += g.bytesHeld();
            }
        }
        return bytes;
    }

    @Override
    public long bytesFp16() {
        long tokens = 0;
        for (int l = 0; l < shape.layers(); l++) {
            tokens += groups[l][0].length();
        }
        return tokens * 2L * 2L * shape.kvHeads() * shape.headDim();
    }

    @Override
    public StoredHistory stored(int layer) {
        checkOpen();
        checkLayer(layer);
        if (spec.config().policy() != CachePolicy.APPEND) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "policy " + spec.config().policy().id() + " re-quantizes its "
                    + "history, so it cannot be mirrored where the model runs; use policy append or placement host");
        }
        HeadGroup[] layerGroups = groups[layer];
        return new StoredHistory() {
            @Override
            public int quantizedTokens() {
                return layerGroups[0].quantizedTokens;
            }

            @Override
            public int groups() {
                return layerGroups.length;
            }

            @Override
            public int residualCapacity() {
                return spec.config().residualLength();
            }

            @Override
            public boolean halfParams() {
                return spec.config().halfScales();
            }

            @Override
            public int groupHeads(int group) {
                return layerGroups[group].heads;
            }

            @Override
            public void blocks(int group, boolean keys, int fromToken, BlockVisitor visitor) {
                layerGroups[group].blocks(keys, fromToken, visitor);
            }

            @Override
            public KvView residual(int group, boolean keys) {
                HeadGroup g = layerGroups[group];
                return (keys ? g.keyResidual : g.valueResidual).view();
            }

            @Override
            public PackedBlock probe(int group, boolean keys, int tokens, SegmentAllocator allocator) {
                HeadGroup g = layerGroups[group];
                float[] sample = new float[g.heads * tokens * shape.headDim()];
                java.util.SplittableRandom random = new java.util.SplittableRandom(group);
                for (int i = 0; i < sample.length; i++) {
                    sample[i] = (float) random.nextGaussian();
                }
                return g.quantize(keys ? g.keyQuantizer : g.valueQuantizer,
                        KvView.of(sample, g.heads, tokens, shape.headDim()), allocator);
            }
        };
    }

    /** Quantized blocks held by a layer (for tests and diagnostics). */
    public int blockCount(int layer) {
        checkLayer(layer);
        return groups[layer][0].blockCount();
    }

    /** Tokens of a layer that are quantized (the rest are in the full-precision residual). */
    public int quantizedTokens(int layer) {
        checkLayer(layer);
        return groups[layer][0].quantizedTokens;
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        for (HeadGroup[] layer : groups) {
            for (HeadGroup g : layer) {
                g.close();
            }
        }
        scratch.close();
    }

    private void checkInput(int layer, KvView keys, KvView values) {
        checkOpen();
        checkLayer(layer);
        if (layer > 0 && !groups[layer][0].initialized && !groups[layer - 1][0].initialized) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "layer " + layer + " is updated before layer "
                    + (layer - 1) + " was ever updated; layers are filled in order 0.." + (shape.layers() - 1));
        }
        checkView("keys", keys, keys.tokens());
        checkView("values", values, keys.tokens());
        checkFinite(layer, "keys", keys);
        checkFinite(layer, "values", values);
    }

    private void checkView(String what, KvView view, int tokens) {
        if (view.heads() != shape.kvHeads() || view.headDim() != shape.headDim() || view.tokens() != tokens) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, what + " view is [" + view.heads() + ", " + view.tokens()
                    + ", " + view.headDim() + "], expected [" + shape.kvHeads() + ", " + tokens + ", "
                    + shape.headDim() + "]");
        }
    }

    static void checkFinite(int layer, String what, KvView view) {
        long bad = view.firstNonFinite();
        if (bad >= 0) {
            int dim = view.headDim();
            long perHead = (long) view.tokens() * dim;
            long h = bad / perHead;
            long t = (bad % perHead) / dim;
            long d = bad % dim;
            throw new KvqException(ErrorCode.NON_FINITE_INPUT, "layer " + layer + " " + what + " hold a non-finite value ("
                    + view.get((int) h, (int) t, (int) d) + ") at head " + h + ", new token " + t + ", channel " + d
                    + "; it is not quantized. Check the model's inputs and export");
        }
    }

    private void checkLayer(int layer) {
        if (layer < 0 || layer >= shape.layers()) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "layer " + layer + " outside 0.." + (shape.layers() - 1));
        }
    }

    private void checkOpen() {
        if (closed) {
            throw new KvqException(ErrorCode.CLOSED, "this KV cache was closed");
        }
    }
}
