package dev.kvq.cache;

import dev.kvq.config.PrecisionPlan;
import dev.kvq.tensor.KvView;

/** A cache that forwards every call to another; subclasses override what they observe or change. */
public abstract class ForwardingKvCache implements KvCache {
    protected final KvCache delegate;

    protected ForwardingKvCache(KvCache delegate) {
        this.delegate = delegate;
    }

    @Override
    public PrecisionPlan plan() {
        return delegate.plan();
    }

    @Override
    public int length(int layer) {
        return delegate.length(layer);
    }

    @Override
    public void append(int layer, KvView keys, KvView values) {
        delegate.append(layer, keys, values);
    }

    @Override
    public void materialize(int layer, KvView keys, KvView values) {
        delegate.materialize(layer, keys, values);
    }

    @Override
    public KvPair update(int layer, KvView keys, KvView values) {
        return delegate.update(layer, keys, values);
    }

    @Override
    public void reserve(int tokens) {
        delegate.reserve(tokens);
    }

    @Override
    public StoredHistory stored(int layer) {
        return delegate.stored(layer);
    }

    @Override
    public long bytesHeld() {
        return delegate.bytesHeld();
    }

    @Override
    public long bytesFp16() {
        return delegate.bytesFp16();
    }

    @Override
    public void close() {
        delegate.close();
    }
}
