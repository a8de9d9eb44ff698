package dev.kvq.generate.spi;

import dev.kvq.generate.model.ModelConfig;

/**
 * A decoder that forwards every call to another; subclasses override what they observe or change (a limit on a
 * step's size, a pace, a count of steps). Closing it closes the delegate.
 */
public abstract class ForwardingDecoder implements Decoder {
    protected final Decoder delegate;

    protected ForwardingDecoder(Decoder delegate) {
        this.delegate = delegate;
    }

    @Override
    public ModelConfig config() {
        return delegate.config();
    }

    @Override
    public String device() {
        return delegate.device();
    }

    @Override
    public PastBuffers past(int batch, int pastLength) {
        return delegate.past(batch, pastLength);
    }

    @Override
    public Step forward(StepInput input) {
        return delegate.forward(input);
    }

    @Override
    public long maxAttentionScores() {
        return delegate.maxAttentionScores();
    }

    @Override
    public boolean halfKv() {
        return delegate.halfKv();
    }

    @Override
    public QuantizedDecoder quantized(QuantizedPastLayout layout) {
        return delegate.quantized(layout);
    }

    @Override
    public void close() {
        delegate.close();
    }
}
