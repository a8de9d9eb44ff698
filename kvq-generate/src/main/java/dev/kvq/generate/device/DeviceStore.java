package dev.kvq.generate.device;

import dev.kvq.cache.KvCache;
import dev.kvq.cache.StoredHistory;
import dev.kvq.generate.spi.DeviceMemory;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.StoredLayer;
import dev.kvq.generate.spi.StoredRun;
import dev.kvq.tensor.KvView;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * The quantized history of a batch of sequences, mirrored in a runtime's device memory in the canonical form of a
 * {@link QuantizedPastLayout}. Each run of each layer has three buffers (codes, scales, zeros) with tokens on the outer
 * axis ({@code [capacity, batch, heads, ...]}), so the first {@code T} tokens are one contiguous tensor; sequence
 * {@code b}'s quantized tokens sit at token slots {@code [0, q_b)} and shorter sequences leave masked slots. The
 * residuals of all layers share one buffer ({@code [batch, heads, R, headDim]} per layer and kind), rewritten from the
 * host as a whole each step: it is bounded by R and never grows with the history.
 *
 * <p>{@link #sync()} copies what the caches quantized since the last call (only new tokens) and the residuals.
 */
public final class DeviceStore implements AutoCloseable {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ValueLayout.OfShort F16 = ValueLayout.JAVA_SHORT_UNALIGNED;

    private final DeviceMemory memory;
    private final QuantizedPastLayout layout;
    private final List<KvCache> caches;
    private final int batch;
    private final int layers;
    private final int heads;
    private final int dim;
    private final int residual;
    private final boolean halfResidual;
    /** Token slots come in multiples of this (the group size of runs grouped along tokens, else 1). */
    private final int quantum;
    private final List<Buffer> buffers = new ArrayList<>();
    /** Per layer, per kind (0 keys, 1 values), per run: codes, scales, zeros. */
    private final Buffer[][][][] runBuffers;
    private final long[] past;
    private final int[] synced;
    private final int[] lastQuantized;
    private final int[] lastResidual;
    private int capacity;
    private int reserved;
    private long residualDevice;
    private MemorySegment residualStaging = MemorySegment.NULL;
    private long residualBytes;
    private MemorySegment staging = MemorySegment.NULL;
    private final int[] row;
    private final int[] target;
    /** Per sequence and layer, the cache's stored view (views stay bound to their cache). */
    private final StoredHistory[][] histories;
    private long uploadedBytes;
    private boolean closed;

    public DeviceStore(DeviceMemory memory, QuantizedPastLayout layout, List<KvCache> caches, boolean halfResidual) {
        this.memory = memory;
        this.layout = layout;
        this.caches = List.copyOf(caches);
        this.batch = caches.size();
        this.layers = layout.layers().size();
        this.heads = layout.kvHeads();
        this.dim = layout.headDim();
        this.halfResidual = halfResidual;
        this.row = new int[dim];
        this.target = new int[batch];
        this.histories = new StoredHistory[batch][layers];
        for (int b = 0; b < batch; b++) {
            for (int l = 0; l < layers; l++) {
                histories[b][l] = this.caches.get(b).stored(l);
            }
        }
        int r = 0;
        int q = 1;
        int tensors = 0;
        runBuffers = new Buffer[layers][2][][];
        for (int l = 0; l < layers; l++) {
            StoredLayer sl = layout.layers().get(l);
            r = Math.max(r, sl.residualCapacity());
            for (int kind = 0; kind < 2; kind++) {
                List<StoredRun> runs = kind == 0 ? sl.keys() : sl.values();
                runBuffers[l][kind] = new Buffer[runs.size()][];
                for (int j = 0; j < runs.size(); j++) {
                    StoredRun run = runs.get(j);
                    if (run.axis() == StoredRun.GroupAxis.CHANNEL) {
                        q = lcm(q, run.groupSize());
                    }
                    long rowBytes = (long) batch * run.heads() * run.rowBytes(dim);
                    long params = (long) batch * run.heads() * run.paramsPerRow(dim) * run.paramBytes();
                    int per = run.axis() == StoredRun.GroupAxis.CHANNEL ? run.groupSize() : 1;
                    DeviceMemory.Element codes = !run.raw() ? DeviceMemory.Element.BYTE
                            : run.bits() == 16 ? DeviceMemory.Element.FLOAT16 : DeviceMemory.Element.FLOAT32;
                    DeviceMemory.Element param = run.halfParams() ? DeviceMemory.Element.FLOAT16
                            : DeviceMemory.Element.FLOAT32;
                    runBuffers[l][kind][j] = new Buffer[] {add(new Buffer(rowBytes, 1, codes)),
                            add(new Buffer(params, per, param)), add(new Buffer(params, per, param))};
                    tensors += 3;
                }
            }
            if (sl.residualCapacity() > 0) {
                tensors += 2;
            }
        }
        this.residual = r;
        this.quantum = q;
        this.past = new long[tensors];
        this.synced = new int[batch];
        this.lastQuantized = new int[batch];
        this.lastResidual = new int[batch];
        if (residual > 0) {
            residualBytes = (long) layers * 2 * batch * heads * residual * dim * (halfResidual ? 2 : 4);
            residualDevice = memory.allocate(residualBytes, halfResidual ? DeviceMemory.Element.FLOAT16
                    : DeviceMemory.Element.FLOAT32);
            residualStaging = memory.staging(residualBytes);
            residualStaging.fill((byte) 0);
        }
    }

    private Buffer add(Buffer b) {
        buffers.add(b);
        return b;
    }

    /** Sets the token capacity to allocate at the first growth (a generation that knows its length needs no regrowth). */
    public void reserve(int tokens) {
        reserved = Math.max(reserved, tokens);
    }

    /** Residual positions every step presents. */
    public int residualLength() {
        return residual;
    }

    /** Token slots of quantized storage every run presents now: the longest sequence's, rounded to whole groups. */
    public int quantizedLength() {
        int t = 0;
        for (int b = 0; b < batch; b++) {
            t = Math.max(t, synced[b]);
        }
        return roundUp(t, quantum);
    }

    /** Quantized tokens of sequence {@code b} on the device. */
    public int quantized(int b) {
        return synced[b];
    }

    /** Residual tokens of sequence {@code b} on the device. */
    public int residualTokens(int b) {
        return lastResidual[b];
    }

    /** Device addresses of the past tensors, in {@link dev.kvq.generate.spi.QuantizedStep} order. Reused. */
    public long[] pastAddresses() {
        int i = 0;
        for (int l = 0; l < layers; l++) {
            for (int kind = 0; kind < 2; kind++) {
                for (Buffer[] run : runBuffers[l][kind]) {
                    past[i++] = run[0].address;
                    past[i++] = run[1].address;
                    past[i++] = run[2].address;
                }
            }
            if (layout.layers().get(l).residualCapacity() > 0) {
                past[i++] = residualDevice + residualOffset(l, 0, 0);
                past[i++] = residualDevice + residualOffset(l, 1, 0);
            }
        }
        return past;
    }

    /** Bytes this store holds in device memory. */
    public long deviceBytes() {
        long bytes = residualDevice != 0 ? residualBytes : 0;
        for (Buffer b : buffers) {
            bytes += b.allocated;
        }
        return bytes;
    }

    /** Bytes copied from host to device so far. */
    public long uploadedBytes() {
        return uploadedBytes;
    }

    /** Copies to the device what the caches hold and the device does not: new quantized tokens and the residuals. */
    public void sync() {
        int need = 0;
        for (int b = 0; b < batch; b++) {
            target[b] = histories[b][0].quantizedTokens();
            need = Math.max(need, target[b]);
        }
        ensureCapacity(roundUp(need, quantum));
        boolean lockstep = true;
        for (int b = 1; b < batch; b++) {
            lockstep &= synced[b] == synced[0] && target[b] == target[0];
        }
        if (lockstep && target[0] > synced[0] && batch > 1) {
            uploadTogether(synced[0], target[0]);
        } else {
            for (int b = 0; b < batch; b++) {
                if (target[b] > synced[b]) {
                    uploadSequence(b, synced[b], target[b]);
                }
            }
        }
        System.arraycopy(target, 0, synced, 0, batch);
        if (residual > 0) {
            syncResiduals();
        }
    }

    /** Every sequence adds tokens {@code [from, to)}: one upload per buffer for the whole batch. */
    private void uploadTogether(int from, int to) {
        forEachBuffer(from, to, (l, kind, j, t, run, buf, slot0, slots) -> {
            long perSequence = buf.bytesPerSlot / batch;
            MemorySegment s = staging(slots * buf.bytesPerSlot);
            for (int b = 0; b < batch; b++) {
                write(histories[b][l], j, kind, t, run, from, to, s, b * perSequence, buf.bytesPerSlot);
            }
            long bytes = slots * buf.bytesPerSlot;
            memory.upload(s, 0, buf.address + slot0 * buf.bytesPerSlot, bytes);
            uploadedBytes += bytes;
        });
    }

    /** Sequence {@code b} adds tokens {@code [from, to)}: one strided upload per buffer. */
    private void uploadSequence(int b, int from, int to) {
        forEachBuffer(from, to, (l, kind, j, t, run, buf, slot0, slots) -> {
            long perSequence = buf.bytesPerSlot / batch;
            MemorySegment s = staging(slots * perSequence);
            write(histories[b][l], j, kind, t, run, from, to, s, 0, perSequence);
            memory.upload2d(s, 0, perSequence, buf.address + slot0 * buf.bytesPerSlot + b * perSequence,
                    buf.bytesPerSlot, perSequence, slots);
            uploadedBytes += slots * perSequence;
        });
    }

    /** Calls {@code action} for every buffer that gains slots when tokens {@code [from, to)} are added. */
    private void forEachBuffer(int from, int to, BufferAction action) {
        for (int l = 0; l < layers; l++) {
            StoredLayer sl = layout.layers().get(l);
            for (int kind = 0; kind < 2; kind++) {
                List<StoredRun> runs = kind == 0 ? sl.keys() : sl.values();
                for (int j = 0; j < runs.size(); j++) {
                    for (int t = 0; t < 3; t++) {
                        Buffer buf = runBuffers[l][kind][j][t];
                        int slot0 = from / buf.tokensPerSlot;
                        int slots = to / buf.tokensPerSlot - slot0;
                        if (slots > 0 && buf.bytesPerSlot > 0) {
                            action.apply(l, kind, j, t, runs.get(j), buf, slot0, slots);
                        }
                    }
                }
            }
        }
    }

    /** What to do with one buffer's new slots: tensor {@code t} (codes, scales, zeros) of run {@code j}. */
    @FunctionalInterface
    private interface BufferAction {
        void apply(int layer, int kind, int j, int t, StoredRun run, Buffer buf, int slot0, int slots);
    }

    /**
     * Writes tensor {@code tensor} (0 codes, 1 scales, 2 zeros) of run {@code run} for tokens {@code [from, to)} of one
     * sequence into {@code dst} at {@code offset}, consecutive token slots {@code pitch} bytes apart.
     */
    private void write(StoredHistory history, int group, int kind, int tensor, StoredRun run, int from, int to,
                       MemorySegment dst, long offset, long pitch) {
        if (history.isRaw()) {
            if (tensor == 0) {
                writeRaw(history.raw(kind == 0), from, to, dst, offset, pitch, run.bits() == 16);
            }
            return;
        }
        history.blocks(group, kind == 0, from, (block, first, filled) -> {
            int start = Math.max(from, first);
            int end = Math.min(to, first + filled);
            if (end <= start) {
                return;
            }
            int n = end - start;
            int t0 = start - first;
            if (tensor == 0) {
                CanonicalRows.codes(block, t0, n, dst, offset + (long) (start - from) * pitch, pitch, row);
            } else if (run.axis() == StoredRun.GroupAxis.TOKEN) {
                CanonicalRows.tokenParams(block, tensor == 1, t0, n, run.groupSize(), dst,
                        offset + (long) (start - from) * pitch, pitch, run.halfParams());
            } else {
                CanonicalRows.channelParams(block, tensor == 1, t0, n, run.groupSize(), dst,
                        offset + (long) (start - from) / run.groupSize() * pitch, pitch, run.halfParams());
            }
        });
    }

    /** Rows of an unquantized history in the model's K/V dtype. */
    private void writeRaw(KvView src, int from, int to, MemorySegment dst, long offset, long pitch, boolean half) {
        int bytes = half ? 2 : 4;
        for (int t = from; t < to; t++) {
            long at = offset + (long) (t - from) * pitch;
            for (int h = 0; h < src.heads(); h++) {
                for (int d = 0; d < dim; d++) {
                    float v = src.get(h, t, d);
                    long i = at + ((long) h * dim + d) * bytes;
                    if (half) {
                        dst.set(F16, i, Float.floatToFloat16(v));
                    } else {
                        dst.set(F32, i, v);
                    }
                }
            }
        }
    }

    private void syncResiduals() {
        boolean changed = false;
        for (int b = 0; b < batch; b++) {
            KvCache cache = caches.get(b);
            int q = synced[b];
            int r = cache.length(0) - q;
            int fromToken = q != lastQuantized[b] || r < lastResidual[b] ? 0 : lastResidual[b];
            if (r > fromToken) {
                changed = true;
                for (int l = 0; l < layers; l++) {
                    StoredHistory history = histories[b][l];
                    int head = 0;
                    for (int g = 0; g < history.groups(); g++) {
                        writeResidual(history.residual(g, true), l, 0, b, head, fromToken);
                        writeResidual(history.residual(g, false), l, 1, b, head, fromToken);
                        head += history.groupHeads(g);
                    }
                }
            }
            changed |= r != lastResidual[b];
            lastQuantized[b] = q;
            lastResidual[b] = r;
        }
        if (changed) {
            memory.upload(residualStaging, 0, residualDevice, residualBytes);
            uploadedBytes += residualBytes;
        }
    }

    private void writeResidual(KvView src, int layer, int kind, int b, int firstHead, int fromToken) {
        for (int h = 0; h < src.heads(); h++) {
            long base = residualOffset(layer, kind, b) + ((long) (firstHead + h) * residual) * dim * elementBytes();
            for (int t = fromToken; t < src.tokens(); t++) {
                long at = base + (long) t * dim * elementBytes();
                for (int d = 0; d < dim; d++) {
                    float v = src.get(h, t, d);
                    if (halfResidual) {
                        residualStaging.set(F16, at + d * 2L, Float.floatToFloat16(v));
                    } else {
                        residualStaging.set(F32, at + d * 4L, v);
                    }
                }
            }
        }
    }

    private int elementBytes() {
        return halfResidual ? 2 : 4;
    }

    private long residualOffset(int layer, int kind, int b) {
        long perSequence = (long) heads * residual * dim * elementBytes();
        return ((long) (layer * 2 + kind) * batch + b) * perSequence;
    }

    private MemorySegment staging(long bytes) {
        if (staging.byteSize() < bytes) {
            if (staging.byteSize() > 0) {
                memory.freeStaging(staging);
            }
            staging = memory.staging(Math.max(bytes, staging.byteSize() * 2));
        }
        // no clearing: every writer covers all its bytes (bit-packed rows clear themselves before packing)
        return staging;
    }

    private void ensureCapacity(int tokens) {
        if (tokens <= capacity) {
            return;
        }
        int used = quantizedLength();
        int grown = Math.max(tokens, reserved > capacity ? reserved : capacity + capacity / 2);
        int next = roundUp(Math.max(grown, quantum), quantum);
        for (Buffer b : buffers) {
            b.grow(next, used);
        }
        capacity = next;
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        for (Buffer b : buffers) {
            if (b.address != 0) {
                memory.free(b.address);
                b.address = 0;
            }
        }
        if (residualDevice != 0) {
            memory.free(residualDevice);
            memory.freeStaging(residualStaging);
            residualDevice = 0;
        }
        if (staging.byteSize() > 0) {
            memory.freeStaging(staging);
            staging = MemorySegment.NULL;
        }
    }

    private static int roundUp(int value, int quantum) {
        return (value + quantum - 1) / quantum * quantum;
    }

    private static int lcm(int a, int b) {
        int x = a;
        int y = b;
        while (y != 0) {
            int t = x % y;
            x = y;
            y = t;
        }
        return a / x * b;
    }

    /** One device buffer, {@code [capacity / tokensPerSlot, ...]} of {@code bytesPerSlot} bytes per slot. */
    private final class Buffer {
        final long bytesPerSlot;
        final int tokensPerSlot;
        final DeviceMemory.Element element;
        long address;
        long allocated;

        Buffer(long bytesPerSlot, int tokensPerSlot, DeviceMemory.Element element) {
            this.bytesPerSlot = bytesPerSlot;
            this.tokensPerSlot = tokensPerSlot;
            this.element = element;
        }

        void grow(int tokens, int usedTokens) {
            long bytes = (long) tokens / tokensPerSlot * bytesPerSlot;
            long next = memory.allocate(Math.max(element.size(), bytes), element);
            if (address != 0) {
                long used = (long) usedTokens / tokensPerSlot * bytesPerSlot;
                if (used > 0) {
                    memory.copy(address, next, used);
                }
                memory.free(address);
            }
            address = next;
            allocated = bytes;
        }
    }
}
