package dev.kvq.backend.quanto;

import dev.kvq.KvqException;
import dev.kvq.spi.Capabilities;
import dev.kvq.spi.QuantSpec;
import dev.kvq.spi.Quantizer;
import dev.kvq.spi.QuantizerProvider;
import java.util.Set;

/**
 * optimum-quanto as KVTuner and Hugging Face's {@code QuantoQuantizedCache} use it: int2/int4 affine with
 * {@code MaxOptimizer} and groups, int8 symmetric absmax. Axes are quanto's: 0 (groups along head_dim) and -1
 * (groups of consecutive token rows of one channel). The {@code asym} flag is ignored: int2/int4 are always
 * affine, int8 always symmetric.
 */
public final class QuantoProvider implements QuantizerProvider {
    public static final String NAME = "quanto";

    private static final Capabilities CAPABILITIES = Capabilities.of(Set.of(2, 4, 8), Set.of(0, -1), false, true, true,
            Set.of(), "optimum-quanto: int2/int4 MaxOptimizer affine in groups, int8 symmetric absmax; axes 0 and -1");

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
        if (spec.axis() == 1) {
            throw KvqException.unsupported("backend 'quanto' has no axis 1 (" + role + "); quanto's per-channel axis is "
                    + "-1: set axis_key/axis_value to -1 (or 0 for per-token groups)");
        }
        if (spec.groupSize() == -1 && spec.bits() != 8) {
            throw KvqException.config("backend 'quanto' needs a positive q_group_size for " + spec.bits() + "-bit "
                    + role + "; -1 (whole rows) is a vanilla preset, use q_group_size equal to head_dim instead");
        }
        QuantSpec relaxed = spec.groupSize() == -1 ? new QuantSpec(spec.bits(), spec.axis(), 1, spec.asym(),
                spec.options()) : spec;
        QuantizerProvider.super.validate(relaxed, role);
    }

    @Override
    public boolean groupsSpanTokens(QuantSpec spec) {
        return spec.axis() == -1;
    }

    @Override
    public Quantizer create(QuantSpec spec) {
        validate(spec, "this spec");
        return new QuantoQuantizer(spec);
    }
}
