package dev.kvq.spi;

import dev.kvq.KvqException;
import java.lang.module.ModuleDescriptor;
import java.util.stream.Collectors;

/**
 * A quantizer backend, discovered by {@link java.util.ServiceLoader}. Implementations declare
 * {@code provides dev.kvq.spi.QuantizerProvider with ...} in their module descriptor and list the class in
 * {@code META-INF/services/dev.kvq.spi.QuantizerProvider}, so they load from the module path and the class
 * path alike. Must have a public no-argument constructor and do no work in it.
 */
public interface QuantizerProvider {
    /** Stable lower-case name users put in configuration ({@code backend: hqq}); unique among providers. */
    String name();

    /** Supported bit widths, axes and group rules. */
    Capabilities capabilities();

    /** Makes a quantizer for {@code spec}, after {@link #validate}. */
    Quantizer create(QuantSpec spec);

    /**
     * Rejects a spec this backend cannot run, with a message that names {@code role} (for example
     * "keys of layer 3"), the value and what is allowed. The default checks the {@link #capabilities()}.
     */
    default void validate(QuantSpec spec, String role) {
        Capabilities c = capabilities();
        if (!c.bits().contains(spec.bits())) {
            throw KvqException.unsupported("backend '" + name() + "' cannot quantize " + role + " with "
                    + spec.bits() + " bits; it supports " + join(c.bits()) + " bits");
        }
        if (!c.axes().contains(spec.axis())) {
            throw KvqException.unsupported("backend '" + name() + "' does not support axis " + spec.axis()
                    + " for " + role + "; it supports axis " + join(c.axes()));
        }
        if (spec.groupSize() == -1 && !c.wholeRowGroups()) {
            throw KvqException.unsupported("backend '" + name() + "' needs a positive q_group_size; -1 (whole rows) "
                    + "is not supported");
        }
        if (spec.groupSize() == -1 && spec.axis() != 0) {
            throw KvqException.unsupported("q_group_size -1 (one group per head_dim row) needs the per-token axis 0, but "
                    + role + " use axis " + spec.axis());
        }
        if (spec.asym() && !c.asymmetric()) {
            throw KvqException.unsupported("backend '" + name() + "' has no asymmetric mode; set asym: false");
        }
        if (!spec.asym() && !c.symmetric()) {
            throw KvqException.unsupported("backend '" + name() + "' has no symmetric mode; set asym: true");
        }
        for (String key : spec.options().keySet()) {
            if (!c.options().contains(key)) {
                throw KvqException.unsupported("backend '" + name() + "' has no option '" + key + "'"
                        + (c.options().isEmpty() ? "" : "; it reads " + join(c.options())));
            }
        }
    }

    /**
     * Whether the groups of {@code spec} run along tokens (per-channel quantization), so that a block needs several
     * tokens to form them. The default reads axis 0 as per-token and anything else as per-channel; backends with
     * other axis conventions override it.
     */
    default boolean groupsSpanTokens(QuantSpec spec) {
        return spec.axis() != 0;
    }

    /** The version of the module or jar that holds the provider, or "unversioned". */
    default String version() {
        Module m = getClass().getModule();
        if (m.isNamed()) {
            var v = m.getDescriptor().rawVersion();
            if (v.isPresent()) {
                return v.get();
            }
        }
        Package p = getClass().getPackage();
        String v = p == null ? null : p.getImplementationVersion();
        return v == null ? "unversioned" : v;
    }

    private static String join(java.util.Collection<?> values) {
        return values.stream().map(String::valueOf).collect(Collectors.joining(", "));
    }

    /** Where the provider was loaded from: a named module or the class path. */
    default String origin() {
        Module m = getClass().getModule();
        ModuleDescriptor d = m.getDescriptor();
        return m.isNamed() && d != null ? "module " + d.name() : "class path";
    }
}
