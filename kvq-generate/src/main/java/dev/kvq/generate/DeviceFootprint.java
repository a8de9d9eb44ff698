package dev.kvq.generate;

import dev.kvq.cache.KvCache;
import dev.kvq.generate.device.DeviceStore;
import dev.kvq.generate.device.PastLayouts;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.spi.QuantizedPastLayout;

/**
 * The bytes a session's caches take in the runtime's memory under placement device, exactly as its store allocates
 * them: every sequence gets rows for as many tokens as the longest member reserved (the history is one token-major
 * tensor per run), plus the residual window. What a memory budget admits sequences by.
 */
public final class DeviceFootprint {
    private final QuantizedPastLayout layout;
    private final boolean halfKv;

    private DeviceFootprint(QuantizedPastLayout layout, boolean halfKv) {
        this.layout = layout;
        this.halfKv = halfKv;
    }

    /**
     * The footprint of {@code caches} on {@code decoder}, in the layout its quantized decoder reads (made here if not
     * yet, as a session would); fails as placement device would for caches it cannot hold.
     */
    public static DeviceFootprint of(Decoder decoder, CacheFactory caches) {
        try (KvCache probe = caches.newCache()) {
            return new DeviceFootprint(decoder.quantized(layoutOf(decoder, probe)).layout(), decoder.halfKv());
        }
    }

    /** How {@code cache}'s history lies in {@code decoder}'s memory under placement device. */
    static QuantizedPastLayout layoutOf(Decoder decoder, KvCache cache) {
        var config = decoder.config();
        return PastLayouts.of(cache, config.layers(), config.kvHeads(), config.headDim(), decoder.halfKv());
    }

    /** Bytes for {@code sequences} sequences with room for {@code tokens} tokens each. */
    public long bytes(int sequences, int tokens) {
        return DeviceStore.bytesFor(layout, halfKv, sequences, tokens);
    }
}
