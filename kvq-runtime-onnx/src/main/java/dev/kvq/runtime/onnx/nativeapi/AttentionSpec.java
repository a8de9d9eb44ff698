package dev.kvq.runtime.onnx.nativeapi;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.StoredRun;
import java.util.ArrayList;
import java.util.List;

/**
 * One layer's attention over kvq's quantized history, as a custom operator of ONNX Runtime ({@link CustomOps}): the
 * model's {@code softmax(q k^T * scale + bias) v}, where the keys and values are the layer's quantized tokens (read
 * from their codes, scales and zeros), then its residual window, then the step's new tokens, in the order of the
 * model's attention mask. Query heads are grouped over the KV heads as the model repeats them ({@code h / group}).
 *
 * <p>Inputs, in order: {@code query [B, kvHeads * group, t, D]}, {@code new_key} and {@code new_value [B, kvHeads,
 * t, D]}, {@code bias} (additive, broadcastable to {@code [B, heads, t, T + R + t]}), then per run of the keys its
 * codes (and, unless raw, scales and zeros), then the values' runs likewise, then, with a residual window, {@code
 * residual_key} and {@code residual_value [B, kvHeads, R, D]}. Outputs: {@code out [B, heads, t, D]} and a float32
 * scratch tensor that holds the partial results of split work on the GPU (empty on the CPU).
 *
 * <p>Immutable; the stretches of heads that one kernel launch covers are worked out once, here.
 */
public final class AttentionSpec {
    /** Indices of the inputs before the runs', in the operator's order. */
    static final int QUERY = 0;
    static final int BIAS = 3;
    /** The first input of the first key run: its codes, whose first dimension is the quantized tokens' capacity. */
    static final int FIRST_CODES = 4;

    /** The CUDA kernel's most query heads per KV head, and most outputs of one block (group times head size). */
    static final int MOST_GROUP = 8;
    static final int MOST_OUTPUTS = 1024;

    private final String name;
    private final int kvHeads;
    private final int group;
    private final int headDim;
    private final float scale;
    private final boolean half;
    private final List<StoredRun> keys;
    private final List<StoredRun> values;
    private final int residualCapacity;
    private final int tokenBlock;
    private final List<Stretch> stretches;

    /**
     * @param name the operator's name in kvq's domain
     * @param half whether the model's K/V (and query, bias and output) are float16, else float32
     * @param tokenBlock tokens a run keeps side by side per sequence and head
     *     ({@link QuantizedPastLayout#tokenBlock()}), a power of two
     */
    public AttentionSpec(String name, int kvHeads, int group, int headDim, float scale, boolean half,
                         List<StoredRun> keys, List<StoredRun> values, int residualCapacity, int tokenBlock) {
        KvqException.require(kvHeads > 0 && group > 0 && headDim > 0, "invalid attention shape");
        this.name = name;
        this.kvHeads = kvHeads;
        this.group = group;
        this.headDim = headDim;
        this.scale = scale;
        this.half = half;
        this.keys = List.copyOf(keys);
        this.values = List.copyOf(values);
        this.residualCapacity = residualCapacity;
        this.tokenBlock = QuantizedPastLayout.requireTokenBlock(tokenBlock);
        this.stretches = stretches(kvHeads, this.keys, this.values);
    }

    public String name() {
        return name;
    }

    public int kvHeads() {
        return kvHeads;
    }

    public int group() {
        return group;
    }

    public int headDim() {
        return headDim;
    }

    public float scale() {
        return scale;
    }

    public boolean half() {
        return half;
    }

    public List<StoredRun> keys() {
        return keys;
    }

    public List<StoredRun> values() {
        return values;
    }

    public int residualCapacity() {
        return residualCapacity;
    }

    public int tokenBlock() {
        return tokenBlock;
    }

    /**
     * A stretch of KV heads over which neither the key run nor the value run changes; a layer whose heads share their
     * bits is one stretch.
     */
    record Stretch(int firstHead, int heads, int keyRun, int valueRun) {
    }

    List<Stretch> stretches() {
        return stretches;
    }

    /**
     * Whether kvq's operator computes this layer: on the CPU always; with CUDA's kernel for head sizes 32, 64 and 128,
     * at most 8 query heads per KV head, rows of whole 16-byte chunks and token groups of a multiple of 16 channels.
     */
    public static boolean supported(int group, int headDim, List<StoredRun> keys, List<StoredRun> values,
                                    boolean cuda) {
        if (!cuda) {
            return true;
        }
        if (headDim != 32 && headDim != 64 && headDim != 128 || group > MOST_GROUP || group * headDim > MOST_OUTPUTS) {
            return false;
        }
        for (List<StoredRun> runs : List.of(keys, values)) {
            for (StoredRun run : runs) {
                // the kernel reads codes 16 bytes at a time and loads a token group's parameters once per 16 codes
                if (!run.raw() && (run.rowBytes(headDim) % 16 != 0 || run.axis() == StoredRun.GroupAxis.TOKEN
                        && (headDim % run.groupSize() != 0 || run.groupSize() % 16 != 0))) {
                    return false;
                }
            }
        }
        return true;
    }

    /** Whether the computation reads input {@code index}'s shape (the others' follow from these and the spec). */
    boolean shapeRead(int index) {
        return index == QUERY || index == BIAS || index == FIRST_CODES || index == residualInput();
    }

    /** Number of inputs. */
    public int inputCount() {
        return 4 + tensors(keys) + tensors(values) + (residualCapacity > 0 ? 2 : 0);
    }

    /** The element type of input {@code index}. */
    public TensorElementType inputType(int index) {
        TensorElementType kv = half ? TensorElementType.FLOAT16 : TensorElementType.FLOAT;
        if (index < 4) {
            return kv;
        }
        int i = index - 4;
        for (List<StoredRun> runs : List.of(keys, values)) {
            for (StoredRun run : runs) {
                if (i == 0) {
                    return run.raw() ? (run.bits() == 16 ? TensorElementType.FLOAT16 : TensorElementType.FLOAT)
                            : TensorElementType.UINT8;
                }
                if (!run.raw() && i <= 2) {
                    return run.halfParams() ? TensorElementType.FLOAT16 : TensorElementType.FLOAT;
                }
                i -= run.raw() ? 1 : 3;
            }
        }
        if (i < 2 && residualCapacity > 0) {
            return kv;
        }
        throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, name + " has " + inputCount() + " inputs, not " + (index + 1));
    }

    /** The element type of output {@code index} (0: the attention, 1: float32 scratch). */
    public TensorElementType outputType(int index) {
        return index == 0 ? (half ? TensorElementType.FLOAT16 : TensorElementType.FLOAT) : TensorElementType.FLOAT;
    }

    /** Index of the first input of key run {@code run} (its codes). */
    int keyInput(int run) {
        return 4 + tensors(keys.subList(0, run));
    }

    /** Index of the first input of value run {@code run} (its codes). */
    int valueInput(int run) {
        return 4 + tensors(keys) + tensors(values.subList(0, run));
    }

    /** Index of the residual keys (the values follow), or -1 without a residual window. */
    int residualInput() {
        return residualCapacity > 0 ? 4 + tensors(keys) + tensors(values) : -1;
    }

    private static List<Stretch> stretches(int kvHeads, List<StoredRun> keys, List<StoredRun> values) {
        List<Stretch> out = new ArrayList<>();
        int h = 0;
        while (h < kvHeads) {
            int k = runOf(keys, h);
            int v = runOf(values, h);
            int end = Math.min(keys.get(k).firstHead() + keys.get(k).heads(),
                    values.get(v).firstHead() + values.get(v).heads());
            out.add(new Stretch(h, end - h, k, v));
            h = end;
        }
        return List.copyOf(out);
    }

    static int runOf(List<StoredRun> runs, int head) {
        for (int r = 0; r < runs.size(); r++) {
            StoredRun run = runs.get(r);
            if (head >= run.firstHead() && head < run.firstHead() + run.heads()) {
                return r;
            }
        }
        throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "no run holds KV head " + head);
    }

    private static int tensors(List<StoredRun> runs) {
        int n = 0;
        for (StoredRun run : runs) {
            n += run.raw() ? 1 : 3;
        }
        return n;
    }
}
