package dev.kvq.generate.spi;

import dev.kvq.KvqException;

/**
 * How a runtime runs a model.
 *
 * @param device {@code cpu}, {@code cuda} or {@code cuda:N}
 * @param threads intra-op threads of the runtime, or 0 for the runtime's default (all cores); set it when several
 *     decoders run side by side
 */
public record RuntimeOptions(String device, int threads) {
    public RuntimeOptions {
        if (device == null || !device.matches("cpu|cuda(:\\d+)?")) {
            throw KvqException.config("device must be cpu, cuda or cuda:N, was '" + device + "'");
        }
        if (threads < 0) {
            throw KvqException.config("threads must be 0 (runtime default) or positive, was " + threads);
        }
    }

    public static RuntimeOptions on(String device) {
        return new RuntimeOptions(device, 0);
    }

    /** The CUDA device index ({@code cuda} is device 0). */
    public int cudaDevice() {
        return device.contains(":") ? Integer.parseInt(device.substring(device.indexOf(':') + 1)) : 0;
    }

    public boolean cuda() {
        return device.startsWith("cuda");
    }
}
