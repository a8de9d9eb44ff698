package dev.kvq.tuner;

import dev.kvq.cache.KvCache;
import dev.kvq.cache.quantized.FullPrecisionKvCache;
import dev.kvq.config.ModelShape;
import dev.kvq.config.PrecisionPlan;
import dev.kvq.tensor.KvView;

/**
 * A cache that quantizes one layer (through a one-layer quantized cache) and keeps every other layer in full
 * precision: "only that layer's K/V are quantized" for the end-to-end sensitivity.
 */
final class LayerMixCache implements KvCache {
    private final int layer;
    private final KvCache fp;
    private final KvCache quantized;

    LayerMixCache(ModelShape shape, int layer, KvCache oneLayerQuantized) {
        this.layer = layer;
        this.fp = new FullPrecisionKvCache(shape);
        this.quantized = oneLayerQuantized;
    }

    @Override
    public PrecisionPlan plan() {
        return fp.plan();
    }

    @Override
    public int length(int l) {
        return l == layer ? quantized.length(0) : fp.length(l);
    }

    @Override
    public void append(int l, KvView keys, KvView values) {
        if (l == layer) {
            quantized.append(0, keys, values);
        } else {
            fp.append(l, keys, values);
        }
    }

    @Override
    public void materialize(int l, KvView keys, KvView values) {
        if (l == layer) {
            quantized.materialize(0, keys, values);
        } else {
            fp.materialize(l, keys, values);
        }
    }

    @Override
    public KvPair update(int l, KvView keys, KvView values) {
        return l == layer ? quantized.update(0, keys, values) : fp.update(l, keys, values);
    }

    @Override
    public long bytesHeld() {
        return fp.bytesHeld() + quantized.bytesHeld();
    }

    @Override
    public long bytesFp16() {
        return fp.bytesFp16();
    }

    @Override
    public void close() {
        fp.close();
        quantized.close();
    }
}
