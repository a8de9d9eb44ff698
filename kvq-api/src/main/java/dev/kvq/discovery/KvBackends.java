package dev.kvq.discovery;

import dev.kvq.spi.QuantizerProvider;
import java.util.Collection;
import java.util.ServiceLoader;

/** Discovery of quantizer backends ({@link QuantizerProvider}) by name. */
public final class KvBackends {
    private KvBackends() {
    }

    /** Backends visible to kvq's own module: the boot layer's modules and the class path. */
    public static ProviderRegistry<QuantizerProvider> discover() {
        return ProviderRegistry.load("backend", ServiceLoader.load(QuantizerProvider.class), QuantizerProvider::name);
    }

    /** Backends visible through {@code loader} (for example a {@link java.net.URLClassLoader} over plugin jars). */
    public static ProviderRegistry<QuantizerProvider> discover(ClassLoader loader) {
        return ProviderRegistry.load("backend", ServiceLoader.load(QuantizerProvider.class, loader),
                QuantizerProvider::name);
    }

    /** Backends in {@code layer} and its parents (plugin jars on a module path of their own). */
    public static ProviderRegistry<QuantizerProvider> discover(ModuleLayer layer) {
        return ProviderRegistry.load("backend", ServiceLoader.load(layer, QuantizerProvider.class),
                QuantizerProvider::name);
    }

    /** A registry of exactly these backends. */
    public static ProviderRegistry<QuantizerProvider> of(Collection<? extends QuantizerProvider> providers) {
        return ProviderRegistry.of("backend", providers, QuantizerProvider::name);
    }
}
