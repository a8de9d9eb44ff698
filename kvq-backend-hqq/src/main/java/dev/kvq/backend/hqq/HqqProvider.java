package dev.kvq.backend.hqq;

import dev.kvq.KvqException;
import dev.kvq.spi.Capabilities;
import dev.kvq.spi.QuantSpec;
import dev.kvq.spi.Quantizer;
import dev.kvq.spi.QuantizerProvider;
import java.util.Locale;
import java.util.Set;

/**
 * HQQ ({@code hqq/core/quantize.py Quantizer.quantize} with {@code channel_wise=True}): min-max initialisation with
 * HQQ's inverse scale, unsigned codes, and by default the proximal zero-point optimizer. HQQ is always
 * asymmetric (a zero point per group); the {@code asym} flag is ignored, as KVTuner's HQQ cache ignores it.
 *
 * <p>Options: {@code optimize} ({@code true} by default as in hqq 0.2.6+; {@code false} is the behaviour of hqq up
 * to 0.2.5, which KVTuner's experiments most likely used); {@code beta_growth} ({@code false}; {@code true}
 * multiplies beta by kappa = 1.01 each iteration as hqq up to 0.2.5 did).
 */
public final class HqqProvider implements QuantizerProvider {
    public static final String NAME = "hqq";

    private static final Capabilities CAPABILITIES = Capabilities.of(Set.of(1, 2, 3, 4, 8), Set.of(0, 1), false, true,
            true, Set.of("optimize", "beta_growth"),
            "HQQ: min-max + proximal zero-point solver; axis 1 consecutive groups, axis 0 strided groups");

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
        if (spec.groupSize() == -1) {
            throw KvqException.config("backend 'hqq' needs a positive q_group_size (HQQ reshapes to groups of that "
                    + "size; -1 would crash the reference); for per-token rows use q_group_size equal to head_dim");
        }
        QuantizerProvider.super.validate(spec, role);
        bool(spec, "optimize");
        bool(spec, "beta_growth");
    }

    /** HQQ's axis 0 groups are strided across all rows; axis 1 groups are consecutive elements of a row. */
    @Override
    public boolean groupsSpanTokens(QuantSpec spec) {
        return spec.axis() == 0;
    }

    @Override
    public Quantizer create(QuantSpec spec) {
        validate(spec, "this spec");
        return new HqqQuantizer(spec, Boolean.parseBoolean(spec.option("optimize", "true")),
                Boolean.parseBoolean(spec.option("beta_growth", "false")));
    }

    private static void bool(QuantSpec spec, String key) {
        String v = spec.option(key, "true").toLowerCase(Locale.ROOT);
        if (!v.equals("true") && !v.equals("false")) {
            throw KvqException.config("hqq option " + key + " must be true or false, was '" + spec.option(key, "") + "'");
        }
    }
}
