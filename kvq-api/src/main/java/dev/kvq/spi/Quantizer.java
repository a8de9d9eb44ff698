package dev.kvq.spi;

import dev.kvq.tensor.KvView;
import java.lang.foreign.SegmentAllocator;

/**
 * Turns a block of K or V into kvq's standard packed form. Instances are made by a
 * {@link QuantizerProvider} for one {@link QuantSpec}; they hold no per-call state and may be shared by
 * caches on different threads.
 */
public interface Quantizer {
    QuantSpec spec();

    /**
     * Quantizes {@code input} (one sequence, {@code [heads, tokens, headDim]}, all values finite) into a new
     * block whose memory comes from {@code allocator}.
     */
    PackedBlock quantize(KvView input, SegmentAllocator allocator);
}
