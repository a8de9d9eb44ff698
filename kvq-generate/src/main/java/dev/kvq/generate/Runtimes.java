package dev.kvq.generate;

import dev.kvq.discovery.ProviderRegistry;
import dev.kvq.generate.spi.DecoderRuntime;
import java.util.ServiceLoader;

/** Discovery of inference runtimes by name. */
public final class Runtimes {
    private Runtimes() {
    }

    public static ProviderRegistry<DecoderRuntime> discover() {
        return ProviderRegistry.load("runtime", ServiceLoader.load(DecoderRuntime.class), DecoderRuntime::name);
    }
}
