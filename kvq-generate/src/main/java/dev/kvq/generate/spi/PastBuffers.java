package dev.kvq.generate.spi;

import dev.kvq.tensor.KvView;

/** Past K/V inputs of one step: per layer and sequence, a {@code [kvHeads, pastLength, headDim]} float32 view to fill. */
public interface PastBuffers {
    int batch();

    int length();

    KvView keys(int layer, int sequence);

    KvView values(int layer, int sequence);
}
