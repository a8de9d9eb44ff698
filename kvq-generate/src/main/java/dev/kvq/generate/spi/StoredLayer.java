package dev.kvq.generate.spi;

import java.util.List;

/**
 * How one layer's history is stored where the model runs: runs of heads for keys and for values (one run covering
 * every head under per-layer precision; under per-head precision, consecutive heads of equal precision share a run),
 * then a full-precision residual of at most {@code residualCapacity} tokens, {@code [B, kvHeads, residualCapacity,
 * headDim]} in the model's KV dtype (absent when 0).
 */
public record StoredLayer(List<StoredRun> keys, List<StoredRun> values, int residualCapacity) {
    public StoredLayer {
        keys = List.copyOf(keys);
        values = List.copyOf(values);
    }
}
