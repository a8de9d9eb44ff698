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

    /**
     * Quantizes one token of every head ({@code token}, {@code [heads, 1, headDim]}, all values finite) into token
     * {@code at} of {@code into}: a {@link PackedBlock#rowCopyable} block this quantizer made, whose rows for that
     * token are still zero (a cache's tail, filled one token per decode step). The token's codes, scales and zeros
     * are exactly those {@link #quantize} gives it. The default quantizes into {@code scratch} and copies the rows;
     * a backend may write them in place instead, which saves a decode step a block and a copy per layer.
     */
    default void quantizeToken(KvView token, PackedBlock into, int at, SegmentAllocator scratch) {
        into.copyToken(quantize(token, scratch), 0, at);
    }
}
