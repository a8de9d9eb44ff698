package com.example.kvq.absmax;

import dev.kvq.spi.AffineForm;
import dev.kvq.spi.BitPacking;
import dev.kvq.spi.Capabilities;
import dev.kvq.spi.CodeOrder;
import dev.kvq.spi.PackedBlock;
import dev.kvq.spi.QuantSpec;
import dev.kvq.spi.Quantizer;
import dev.kvq.spi.QuantizerProvider;
import dev.kvq.tensor.KvView;
import java.lang.foreign.SegmentAllocator;
import java.util.Set;

/** A third-party backend written only against kvq's SPI: symmetric absmax per token row. */
public final class AbsmaxProvider implements QuantizerProvider {
    @Override
    public String name() {
        return "example-absmax";
    }

    @Override
    public Capabilities capabilities() {
        return Capabilities.of(Set.of(4, 8), Set.of(0), true, true, false, Set.of(), "example: symmetric absmax per row");
    }

    @Override
    public Quantizer create(QuantSpec spec) {
        int bits = spec.bits();
        int qmax = (1 << (bits - 1)) - 1;
        return new Quantizer() {
            @Override
            public QuantSpec spec() {
                return spec;
            }

            @Override
            public PackedBlock quantize(KvView in, SegmentAllocator allocator) {
                int d = in.headDim();
                PackedBlock b = PackedBlock.allocate(allocator, bits, CodeOrder.TOKEN_MAJOR, AffineForm.ZERO_POINT,
                        -(qmax + 1), in.heads(), in.tokens(), d, d);
                int[] codes = new int[d];
                long g = 0;
                for (int h = 0; h < in.heads(); h++) {
                    for (int t = 0; t < in.tokens(); t++) {
                        float amax = 1e-8f;
                        for (int i = 0; i < d; i++) {
                            amax = Math.max(amax, Math.abs(in.get(h, t, i)));
                        }
                        float s = amax / qmax;
                        for (int i = 0; i < d; i++) {
                            codes[i] = Math.round(in.get(h, t, i) / s) + qmax + 1;
                        }
                        BitPacking.pack(codes, 0, d, bits, b.codes(), g * d);
                        b.setGroup(g++, s, 0f);
                    }
                }
                return b;
            }
        };
    }
}
