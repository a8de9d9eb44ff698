package dev.kvq.generate.spi;

/**
 * A decoder whose model reads a quantized history in place ({@link QuantizedPastLayout}): kvq keeps the history in
 * the decoder's {@link #memory()} and hands its tensors to every step. Valid until its base decoder closes.
 */
public interface QuantizedDecoder {
    QuantizedPastLayout layout();

    /** Whether the model's K/V (and so the residual kvq hands it) are float16 rather than float32. */
    boolean halfKv();

    /** Where the history must live. */
    DeviceMemory memory();

    /**
     * Runs one step. {@code past} holds, in {@link QuantizedStep#tensorOrder() the layout's order}, the device
     * tensors of every run and residual. The returned step is valid until the next forward.
     */
    Step forward(QuantizedStep step);
}
