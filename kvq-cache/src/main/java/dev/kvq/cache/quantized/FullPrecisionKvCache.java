package dev.kvq.cache.quantized;

import dev.kvq.cache.StoredHistory;
import dev.kvq.spi.PackedBlock;
import java.lang.foreign.SegmentAllocator;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.cache.KvCache;
import dev.kvq.config.LayerBits;
import dev.kvq.config.ModelShape;
import dev.kvq.config.PrecisionPlan;
import dev.kvq.config.LayerPlan;
import dev.kvq.tensor.KvView;
import java.util.ArrayList;
import java.util.List;

/** A float32 KV cache with no quantization: the baseline every quantized cache is measured against. */
public final class FullPrecisionKvCache implements KvCache {
    private final ModelShape shape;
    private final PrecisionPlan plan;
    private final ResidualBuffer[] keys;
    private final ResidualBuffer[] values;
    private boolean closed;

    public FullPrecisionKvCache(ModelShape shape) {
        this(shape, 64);
    }

    public FullPrecisionKvCache(ModelShape shape, int initialCapacity) {
        this.shape = shape;
        List<LayerPlan> layers = new ArrayList<>();
        for (int l = 0; l < shape.layers(); l++) {
            layers.add(LayerPlan.uniform(l, shape.kvHeads(), new LayerBits(8, 8)));
        }
        this.plan = new PrecisionPlan(shape, layers);
        this.keys = new ResidualBuffer[shape.layers()];
        this.values = new ResidualBuffer[shape.layers()];
        for (int l = 0; l < shape.layers(); l++) {
            keys[l] = new ResidualBuffer(shape.kvHeads(), shape.headDim(), initialCapacity);
            values[l] = new ResidualBuffer(shape.kvHeads(), shape.headDim(), initialCapacity);
        }
    }

    /** Reports 32 bits: nothing is quantized. The plan's bit fields are not used. */
    @Override
    public PrecisionPlan plan() {
        return plan;
    }

    @Override
    public int length(int layer) {
        return keys[layer].tokens();
    }

    @Override
    public void append(int layer, KvView k, KvView v) {
        check();
        QuantizedKvCache.checkFinite(layer, "keys", k);
        QuantizedKvCache.checkFinite(layer, "values", v);
        keys[layer].append(k);
        values[layer].append(v);
    }

    @Override
    public void reserve(int tokens) {
        check();
        for (int l = 0; l < keys.length; l++) {
            keys[l].reserve(tokens);
            values[l].reserve(tokens);
        }
    }

    @Override
    public void materialize(int layer, KvView k, KvView v) {
        check();
        keys[layer].view().copyTo(k);
        values[layer].view().copyTo(v);
    }

    @Override
    public KvPair update(int layer, KvView k, KvView v) {
        append(layer, k, v);
        return new KvPair(keys[layer].view(), values[layer].view());
    }

    @Override
    public StoredHistory stored(int layer) {
        check();
        ResidualBuffer k = keys[layer];
        ResidualBuffer v = values[layer];
        return new StoredHistory() {
            @Override
            public int quantizedTokens() {
                return k.tokens();
            }

            @Override
            public int residualCapacity() {
                return 0;
            }

            @Override
            public boolean halfParams() {
                return false;
            }

            @Override
            public int groups() {
                return 1;
            }

            @Override
            public int groupHeads(int group) {
                return shape.kvHeads();
            }

            @Override
            public void blocks(int group, boolean keys, int fromToken, BlockVisitor visitor) {
            }

            @Override
            public KvView residual(int group, boolean keys) {
                return (keys ? k : v).view().tokens(0, 0);
            }

            @Override
            public PackedBlock probe(int group, boolean keys, int tokens, SegmentAllocator allocator) {
                throw new KvqException(ErrorCode.UNSUPPORTED, "a full-precision cache has no quantized blocks");
            }

            @Override
            public boolean isRaw() {
                return true;
            }

            @Override
            public KvView raw(boolean keys) {
                return (keys ? k : v).view();
            }
        };
    }

    @Override
    public long bytesHeld() {
        long b = 0;
        for (int l = 0; l < shape.layers(); l++) {
            b += keys[l].byteSize() + values[l].byteSize();
        }
        return b;
    }

    @Override
    public long bytesFp16() {
        long tokens = 0;
        for (ResidualBuffer k : keys) {
            tokens += k.tokens();
        }
        return tokens * 2L * 2L * shape.kvHeads() * shape.headDim();
    }

    @Override
    public void close() {
        if (!closed) {
            closed = true;
            for (int l = 0; l < shape.layers(); l++) {
                keys[l].close();
                values[l].close();
            }
        }
    }

    private void check() {
        if (closed) {
            throw new KvqException(ErrorCode.CLOSED, "this KV cache was closed");
        }
    }
}
