package dev.kvq.discovery;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.ServiceConfigurationError;
import java.util.ServiceLoader;
import java.util.function.Function;

/**
 * Providers of one kind (quantizer backends, inference runtimes) by name. Built explicitly from a
 * {@link ServiceLoader} or a collection; immutable; no static state. A provider that fails to load is
 * recorded in {@link #failures()} and the others still load; two providers with one name are an error;
 * asking for an unknown name fails with the list of known names.
 *
 * @param <P> the provider type
 */
public final class ProviderRegistry<P> {
    /** A provider that could not be loaded, and why. */
    public record LoadFailure(String kind, String message, Throwable cause) {
    }

    private final String kind;
    private final Map<String, P> byName;
    private final List<LoadFailure> failures;

    private ProviderRegistry(String kind, Map<String, P> byName, List<LoadFailure> failures) {
        this.kind = kind;
        this.byName = Collections.unmodifiableMap(byName);
        this.failures = List.copyOf(failures);
    }

    /**
     * Loads every provider {@code loader} finds. {@code kind} names the provider kind in messages
     * ("backend", "runtime").
     */
    public static <P> ProviderRegistry<P> load(String kind, ServiceLoader<P> loader, Function<P, String> name) {
        List<P> found = new ArrayList<>();
        List<LoadFailure> failures = new ArrayList<>();
        Iterator<P> it = loader.iterator();
        while (true) {
            try {
                if (!it.hasNext()) {
                    break;
                }
                found.add(it.next());
            } catch (ServiceConfigurationError | LinkageError | RuntimeException e) {
                failures.add(new LoadFailure(kind, kind + " provider failed to load: " + describe(e), e));
            }
        }
        return of(kind, found, name, failures);
    }

    /** A registry of the given providers (tests, embedding applications). */
    public static <P> ProviderRegistry<P> of(String kind, Collection<? extends P> providers, Function<P, String> name) {
        return of(kind, providers, name, List.of());
    }

    private static <P> ProviderRegistry<P> of(String kind, Collection<? extends P> providers, Function<P, String> name,
                                              List<LoadFailure> failures) {
        Map<String, P> byName = new LinkedHashMap<>();
        List<LoadFailure> all = new ArrayList<>(failures);
        for (P p : providers) {
            String n;
            try {
                n = name.apply(p);
            } catch (RuntimeException e) {
                all.add(new LoadFailure(kind, kind + " provider " + p.getClass().getName()
                        + " failed to report its name: " + describe(e), e));
                continue;
            }
            P previous = byName.putIfAbsent(n, p);
            if (previous != null) {
                throw new KvqException(ErrorCode.DUPLICATE_PROVIDER, "two " + kind + " providers are named '" + n + "': "
                        + where(previous) + " and " + where(p) + "; remove one of them from the module or class path");
            }
        }
        return new ProviderRegistry<>(kind, byName, all);
    }

    /** The provider called {@code name}; fails listing the available names. */
    public P get(String name) {
        P p = byName.get(name);
        if (p == null) {
            StringBuilder msg = new StringBuilder("unknown " + kind + " '" + name + "'; available: ");
            msg.append(byName.isEmpty() ? "none" : String.join(", ", byName.keySet()));
            if (!failures.isEmpty()) {
                msg.append(" (").append(failures.size()).append(" failed to load: ")
                        .append(failures.getFirst().message()).append(")");
            }
            throw new KvqException(ErrorCode.UNKNOWN_PROVIDER, msg.toString());
        }
        return p;
    }

    public boolean contains(String name) {
        return byName.containsKey(name);
    }

    /** Providers in discovery order. */
    public List<P> all() {
        return List.copyOf(byName.values());
    }

    public List<String> names() {
        return List.copyOf(byName.keySet());
    }

    /** Providers that failed to load. */
    public List<LoadFailure> failures() {
        return failures;
    }

    private static String where(Object p) {
        Module m = p.getClass().getModule();
        return p.getClass().getName() + " (" + (m.isNamed() ? "module " + m.getName() : "class path") + ")";
    }

    private static String describe(Throwable e) {
        StringBuilder sb = new StringBuilder(String.valueOf(e.getMessage()));
        for (Throwable c = e.getCause(); c != null && c != c.getCause(); c = c.getCause()) {
            sb.append(" <- ").append(c.getClass().getSimpleName()).append(": ").append(c.getMessage());
        }
        return sb.toString();
    }
}
