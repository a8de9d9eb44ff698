package com.example.kvq.broken;

import dev.kvq.spi.Capabilities;
import dev.kvq.spi.QuantSpec;
import dev.kvq.spi.Quantizer;
import dev.kvq.spi.QuantizerProvider;

/** A provider whose constructor fails, as a jar built against another kvq version might. */
public final class BrokenProvider implements QuantizerProvider {
    public BrokenProvider() {
        throw new IllegalStateException("broken on purpose");
    }

    @Override
    public String name() {
        return "broken";
    }

    @Override
    public Capabilities capabilities() {
        throw new UnsupportedOperationException();
    }

    @Override
    public Quantizer create(QuantSpec spec) {
        throw new UnsupportedOperationException();
    }
}
