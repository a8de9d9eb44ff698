package dev.kvq.backend.vanilla;

import dev.kvq.KvqException;
import dev.kvq.spi.Capabilities;
import dev.kvq.spi.QuantSpec;
import dev.kvq.spi.Quantizer;
import dev.kvq.spi.QuantizerProvider;
import java.util.Set;

/**
 * KVTuner's own quantizer ({@code flexible_quant/vanilla_quantizer.py}): signed codes, round half to even,
 * the 1e-5 range clamp; axis 0 groups along head_dim, axis 1 swaps the last two dims first. Computes in
 * float32 where the reference computes in the KV dtype (fp16 in its experiments); see the README.
 */
public final class VanillaProvider implements QuantizerProvider {
    public static final String NAME = "vanilla";

    private static final Capabilities CAPABILITIES = Capabilities.of(Set.of(1, 2, 3, 4, 5, 6, 7, 8), Set.of(0, 1),
            true, true, true, Set.of(),
            "KVTuner vanilla: min/max (asym) or absmax (sym), signed codes, per-token or per-channel groups");

    @Override
    public String name() {
        return NAME;
    }

    @Override
    public Capabilities capabilities() {
        return CAPABILITIES;
    }

    @Override
    public void validate(QuantSpec spec, String role) {
        QuantizerProvider.super.validate(spec, role);
        if (!spec.asym() && spec.bits() == 1) {
            throw KvqException.unsupported("symmetric 1-bit quantization has no positive code (qmax = 0) and "
                    + "divides by zero in the reference; use asym: true or at least 2 bits for " + role);
        }
    }

    @Override
    public Quantizer create(QuantSpec spec) {
        validate(spec, "this spec");
        return new VanillaQuantizer(spec);
    }
}
