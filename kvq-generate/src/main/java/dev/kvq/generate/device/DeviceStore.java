package dev.kvq.generate.device;

import dev.kvq.cache.KvCache;
import dev.kvq.cache.StoredHistory;
import dev.kvq.generate.spi.DeviceMemory;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.StoredLayer;
import dev.kvq.generate.spi.StoredRun;
import dev.kvq.generate.spi.UploadBatch;
import dev.kvq.tensor.KvView;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The quantized history of a batch of sequences, mirrored in a runtime's device memory in the canonical form of a
 * {@link QuantizedPastLayout}. Each run of each layer has three buffers (codes, scales, zeros) with tokens on the outer
 * axis ({@code [capacity, batch, heads, ...]}, or {@code [capacity / block, batch, heads, block, ...]} with the
 * layout's token blocks), so the first {@code T} tokens are one contiguous tensor; sequence
 * {@code b}'s quantized tokens sit at token slots {@code [0, q_b)} and shorter sequences leave masked slots. The
 * residuals of all layers share one buffer ({@code [batch, heads, R, headDim]} per layer and kind), rewritten from the
 * host as a whole each step: it is bounded by R and never grows with the history.
 *
 * <p>{@link #sync()} copies what the caches quantized since the last call (only new tokens) and the residuals.
 * Sequences join ({@link #add}) and leave ({@link #remove}) between steps: every buffer is then laid out again for the
 * new batch by copies within the device, one buffer at a time (so the store briefly holds one buffer twice), and the
 * token capacity becomes what the members reserved.
 */
public final class DeviceStore implements AutoCloseable {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ValueLayout.OfShort F16 = ValueLayout.JAVA_SHORT_UNALIGNED;
    /**
     * Rows (sequence x head x token, counted once per tensor written: codes, scales, zeros) from which a sync writes
     * its staging on several threads. A decode step of the 1B shape (16 layers of 8 heads) at 8 sequences writes
     * 6,144 (several threads), at 2 sequences 1,536 (the calling thread).
     */
    static final int PARALLEL_ROWS = 2048;

    private final DeviceMemory memory;
    private final QuantizedPastLayout layout;
    private final List<KvCache> caches;
    private int batch;
    private final int layers;
    private final int heads;
    private final int dim;
    private final int residual;
    private final int tokenBlock;
    private final boolean halfResidual;
    /** Token slots come in multiples of this (the group size of runs grouped along tokens, else 1). */
    private final int quantum;
    private final List<Buffer> buffers = new ArrayList<>();
    /** Per layer, per kind (0 keys, 1 values), per run: codes, scales, zeros. */
    private final Buffer[][][][] runBuffers;
    private final long[] past;
    private int[] synced;
    private int[] lastQuantized;
    private int[] lastResidual;
    /** Per sequence, the first residual row the sync under way writes. */
    private int[] residualFrom;
    /** Per sequence, the tokens it reserved ({@link #add}); {@link #reserve} raises them all. */
    private int[] reserves;
    private int capacity;
    private long residualDevice;
    private MemorySegment residualStaging = MemorySegment.NULL;
    private long residualBytes;
    private MemorySegment staging = MemorySegment.NULL;
    /** Where the next upload's bytes go in {@link #staging}: an upload may still read its bytes until synchronized. */
    private long stagingUsed;
    /** The pieces of the sync under way, reused. */
    private final UploadBatch pending = new UploadBatch();
    /** Per thread, a row's scratch: the pieces of a sync are written by several threads when there are enough. */
    private final ThreadLocal<RowScratch> scratch;
    /** The writes of the sync under way, planned first (staging offsets), then carried out. */
    private final PlannedWrites writes = new PlannedWrites();
    private int[] target;
    /** Per sequence and layer, the cache's stored view (views stay bound to their cache). */
    private final List<StoredHistory[]> histories = new ArrayList<>();
    private long uploadedBytes;
    private boolean closed;

    public DeviceStore(DeviceMemory memory, QuantizedPastLayout layout, List<KvCache> caches, boolean halfResidual) {
        this.memory = memory;
        this.layout = layout;
        this.caches = new ArrayList<>(caches);
        this.batch = caches.size();
        this.layers = layout.layers().size();
        this.heads = layout.kvHeads();
        this.dim = layout.headDim();
        this.halfResidual = halfResidual;
        this.tokenBlock = layout.tokenBlock();
        this.scratch = ThreadLocal.withInitial(() -> new RowScratch(dim));
        this.target = new int[batch];
        for (KvCache cache : caches) {
            histories.add(storedViews(cache));
        }
        int tensors = 0;
        runBuffers = new Buffer[layers][2][][];
        for (int l = 0; l < layers; l++) {
            StoredLayer sl = layout.layers().get(l);
            for (int kind = 0; kind < 2; kind++) {
                List<StoredRun> runs = kind == 0 ? sl.keys() : sl.values();
                runBuffers[l][kind] = new Buffer[runs.size()][];
                for (int j = 0; j < runs.size(); j++) {
                    StoredRun run = runs.get(j);
                    runBuffers[l][kind][j] = new Buffer[] {
                            add(rowBuffer(run.heads(), run.rowBytes(dim), codesElement(run))),
                            add(paramBuffer(run)),
                            add(paramBuffer(run))};
                    tensors += 3;
                }
            }
            if (sl.residualCapacity() > 0) {
                tensors += 2;
            }
        }
        this.residual = residualCapacity(layout);
        this.quantum = quantum(layout);
        this.past = new long[tensors];
        this.synced = new int[batch];
        this.lastQuantized = new int[batch];
        this.lastResidual = new int[batch];
        this.residualFrom = new int[batch];
        this.reserves = new int[batch];
        allocateResiduals();
    }

    /**
     * Bytes a store of {@code layout} holds in device memory for {@code batch} sequences with room for {@code tokens}
     * tokens each, exactly as it allocates them: what a budget of device memory admits.
     */
    public static long bytesFor(QuantizedPastLayout layout, boolean halfResidual, int batch, int tokens) {
        if (batch == 0) {
            return 0;
        }
        int dim = layout.headDim();
        int slots = roundUp(tokens, quantum(layout));
        long bytes = 0;
        for (StoredLayer sl : layout.layers()) {
            for (List<StoredRun> runs : List.of(sl.keys(), sl.values())) {
                for (StoredRun run : runs) {
                    if (slots > 0) {
                        bytes += Math.max(codesElement(run).size(), (long) slots * batch * codesPerSequence(run, dim));
                        bytes += 2 * Math.max(paramElement(run).size(),
                                (long) slots / tokensPerParamSlot(run) * batch * paramsPerSequence(run, dim));
                    }
                }
            }
        }
        int r = residualCapacity(layout);
        if (r > 0) {
            bytes += (long) layout.layers().size() * 2 * batch * layout.kvHeads() * r * dim * (halfResidual ? 2 : 4);
        }
        return bytes;
    }

    /**
     * A buffer of one row of {@code rowBytes} per token and head (codes, raw values, parameters of groups along
     * channels): slots of one token, or of the layout's token block with each head's tokens side by side.
     */
    private Buffer rowBuffer(int runHeads, long rowBytes, DeviceMemory.Element element) {
        return new Buffer(runHeads * rowBytes * tokenBlock, tokenBlock, element, rowBytes, tokenBlock > 1);
    }

    private Buffer paramBuffer(StoredRun run) {
        long row = (long) run.paramsPerRow(dim) * run.paramBytes();
        if (run.axis() == StoredRun.GroupAxis.TOKEN) {
            return rowBuffer(run.heads(), row, paramElement(run));
        }
        return new Buffer(paramsPerSequence(run, dim), tokensPerParamSlot(run), paramElement(run), row, false);
    }

    private static long codesPerSequence(StoredRun run, int dim) {
        return (long) run.heads() * run.rowBytes(dim);
    }

    private static long paramsPerSequence(StoredRun run, int dim) {
        return (long) run.heads() * run.paramsPerRow(dim) * run.paramBytes();
    }

    /** Runs grouped along tokens keep one slot of parameters per group of tokens. */
    private static int tokensPerParamSlot(StoredRun run) {
        return run.axis() == StoredRun.GroupAxis.CHANNEL ? run.groupSize() : 1;
    }

    private static DeviceMemory.Element codesElement(StoredRun run) {
        return !run.raw() ? DeviceMemory.Element.BYTE
                : run.bits() == 16 ? DeviceMemory.Element.FLOAT16 : DeviceMemory.Element.FLOAT32;
    }

    private static DeviceMemory.Element paramElement(StoredRun run) {
        return run.halfParams() ? DeviceMemory.Element.FLOAT16 : DeviceMemory.Element.FLOAT32;
    }

    private static int residualCapacity(QuantizedPastLayout layout) {
        int r = 0;
        for (StoredLayer sl : layout.layers()) {
            r = Math.max(r, sl.residualCapacity());
        }
        return r;
    }

    /** Token slots come in multiples of this: the token block and the group sizes of runs grouped along tokens. */
    private static int quantum(QuantizedPastLayout layout) {
        int q = layout.tokenBlock();
        for (StoredLayer sl : layout.layers()) {
            for (List<StoredRun> runs : List.of(sl.keys(), sl.values())) {
                for (StoredRun run : runs) {
                    if (run.axis() == StoredRun.GroupAxis.CHANNEL) {
                        q = lcm(q, run.groupSize());
                    }
                }
            }
        }
        return q;
    }

    private StoredHistory[] storedViews(KvCache cache) {
        StoredHistory[] views = new StoredHistory[layers];
        for (int l = 0; l < layers; l++) {
            views[l] = cache.stored(l);
        }
        return views;
    }

    /** The residual buffer and its host staging for the current batch, zero-filled; none for an empty batch. */
    private void allocateResiduals() {
        if (residual > 0 && batch > 0) {
            residualBytes = (long) layers * 2 * batch * heads * residual * dim * elementBytes();
            residualDevice = memory.allocate(residualBytes, halfResidual ? DeviceMemory.Element.FLOAT16
                    : DeviceMemory.Element.FLOAT32);
            residualStaging = memory.staging(residualBytes);
            residualStaging.fill((byte) 0);
        }
    }

    private void freeResiduals() {
        if (residualDevice != 0) {
            memory.free(residualDevice);
            memory.freeStaging(residualStaging);
            residualDevice = 0;
            residualStaging = MemorySegment.NULL;
        }
    }

    /** How the history is laid out. */
    public QuantizedPastLayout layout() {
        return layout;
    }

    /** Sequences mirrored now. */
    public int batch() {
        return batch;
    }

    /**
     * Adds {@code cache}, which must hold no tokens yet and be laid out as this store's layout says, as the last
     * sequence, with room for {@code reserveTokens} tokens; returns its index.
     */
    public int add(KvCache cache, int reserveTokens) {
        if (cache.length(0) != 0) {
            throw new dev.kvq.KvqException(dev.kvq.ErrorCode.ILLEGAL_ARGUMENT,
                    "a sequence joins the device store empty, this one holds " + cache.length(0) + " tokens");
        }
        int[] keep = java.util.stream.IntStream.range(0, batch).toArray();
        caches.add(cache);
        histories.add(storedViews(cache));
        int[] reserve = java.util.Arrays.copyOf(reserves, batch + 1);
        reserve[batch] = reserveTokens;
        relayout(keep, batch + 1, reserve);
        return batch - 1;
    }

    /** Removes sequence {@code b} (its cache stays open: the caller owns it); the later ones move down one index. */
    public void remove(int b) {
        java.util.Objects.checkIndex(b, batch);
        int[] keep = new int[batch - 1];
        int[] reserve = new int[batch - 1];
        for (int i = 0, k = 0; i < batch; i++) {
            if (i != b) {
                reserve[k] = reserves[i];
                keep[k++] = i;
            }
        }
        caches.remove(b);
        histories.remove(b);
        relayout(keep, batch - 1, reserve);
    }

    /**
     * Lays every buffer out for {@code newBatch} sequences, the old sequence {@code keep[i]} becoming sequence
     * {@code i}, with the token capacity the members reserved (at least what they use).
     */
    private void relayout(int[] keep, int newBatch, int[] reserve) {
        settle();
        int[] newSynced = new int[newBatch];
        int used = 0;
        int wanted = 0;
        for (int i = 0; i < keep.length; i++) {
            newSynced[i] = synced[keep[i]];
            used = Math.max(used, newSynced[i]);
        }
        for (int r : reserve) {
            wanted = Math.max(wanted, r);
        }
        int usedSlots = roundUp(used, quantum);
        // storage for what the members reserved is taken at once: a budget admits them by it
        int newCapacity = newBatch == 0 ? 0 : roundUp(Math.max(wanted, used), quantum);
        int oldBatch = batch;
        for (Buffer buf : buffers) {
            buf.relayout(oldBatch, newBatch, keep, newCapacity, usedSlots);
        }
        capacity = newCapacity;
        batch = newBatch;
        reserves = reserve;
        synced = newSynced;
        target = new int[newBatch];
        lastQuantized = new int[newBatch];
        lastResidual = new int[newBatch];
        residualFrom = new int[newBatch];
        freeResiduals();
        allocateResiduals();
        if (residual > 0 && newBatch > 0) {
            // the residual window of every member is written again: their rows moved
            java.util.Arrays.fill(lastQuantized, -1);
            java.util.Arrays.fill(lastResidual, -1);
            syncResiduals();
        }
    }

    private Buffer add(Buffer b) {
        buffers.add(b);
        return b;
    }

    /** Sets the token capacity to allocate at the first growth (a generation that knows its length needs no regrowth). */
    public void reserve(int tokens) {
        for (int b = 0; b < batch; b++) {
            reserves[b] = Math.max(reserves[b], tokens);
        }
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

    /** Past positions a step presents once the longest sequence holds {@code tokens} tokens: quantized and residual. */
    public int presentedPositions(int tokens) {
        return roundUp(tokens, quantum) + residual;
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
        settle();
        int need = 0;
        for (int b = 0; b < batch; b++) {
            target[b] = histories.get(b)[0].quantizedTokens();
            need = Math.max(need, target[b]);
        }
        ensureCapacity(roundUp(need, quantum));
        boolean lockstep = true;
        for (int b = 1; b < batch; b++) {
            lockstep &= synced[b] == synced[0] && target[b] == target[0];
        }
        writes.clear();
        boolean together = lockstep && target[0] > synced[0] && batch > 1;
        // staging for every piece at once: the pieces are written after they are all planned
        long bytes = 0;
        for (int b = 0; b < (together ? 1 : batch); b++) {
            if (target[b] > synced[b]) {
                bytes += stagingFor(synced[b], target[b], together ? batch : 1);
            }
        }
        reserveStaging(bytes);
        if (together) {
            planTogether(synced[0], target[0]);
        } else {
            for (int b = 0; b < batch; b++) {
                if (target[b] > synced[b]) {
                    planSequence(b, synced[b], target[b]);
                }
            }
        }
        writePlanned();
        // one batch for every buffer and sequence: on CUDA a single launch, not one copy per piece
        flushPending();
        System.arraycopy(target, 0, synced, 0, batch);
        if (residual > 0) {
            syncResiduals();
        }
    }

    /** Hands the pieces written so far to the device memory as one batch. */
    private void flushPending() {
        if (!pending.isEmpty()) {
            memory.uploadBatch(staging, pending);
            uploadedBytes += pending.bytes();
            pending.clear();
        }
    }

    /** Staging bytes the pieces of {@code sequences} sequences adding tokens {@code [from, to)} take. */
    private long stagingFor(int from, int to, int sequences) {
        long[] bytes = {0};
        forEachBuffer(from, to, (l, kind, j, t, run, buf, slot0, slots) -> {
            if (!buf.blocked) {
                bytes[0] += alignedPiece(slots * sequences * buf.perSequence);
                return;
            }
            int block = buf.tokensPerSlot;
            for (int k = from / block; k * block < to; k++) {
                int n = Math.min(to, (k + 1) * block) - Math.max(from, k * block);
                bytes[0] += alignedPiece((long) sequences * run.heads() * n * buf.rowBytes);
            }
        });
        return bytes[0];
    }

    /** Every sequence adds tokens {@code [from, to)}: one piece per buffer for the whole batch. */
    private void planTogether(int from, int to) {
        forEachBuffer(from, to, (l, kind, j, t, run, buf, slot0, slots) -> {
            if (buf.blocked) {
                planBlocks(l, kind, j, t, run, buf, 0, batch, from, to);
                return;
            }
            long size = slots * buf.bytesPerSlot;
            long at = stagingOffset(size);
            writes.add(l, kind, j, t, run, 0, batch, from, to, at, buf.perSequence, buf.bytesPerSlot, buf.rowBytes);
            pending.add(at, buf.address + slot0 * buf.bytesPerSlot, size, size, 1);
        });
    }

    /** Sequence {@code b} adds tokens {@code [from, to)}: one strided piece per buffer. */
    private void planSequence(int b, int from, int to) {
        forEachBuffer(from, to, (l, kind, j, t, run, buf, slot0, slots) -> {
            if (buf.blocked) {
                planBlocks(l, kind, j, t, run, buf, b, b + 1, from, to);
                return;
            }
            long perSequence = buf.perSequence;
            long at = stagingOffset(slots * perSequence);
            writes.add(l, kind, j, t, run, b, b + 1, from, to, at, 0, perSequence, buf.rowBytes);
            pending.add(at, buf.address + slot0 * buf.bytesPerSlot + b * perSequence, buf.bytesPerSlot, perSequence,
                    slots);
        });
    }

    /**
     * Sequences {@code [first, end)} add tokens {@code [from, to)} to a buffer in token blocks: per block they touch,
     * one piece of a row per sequence and head (the block's new tokens of that head, side by side), rows a block
     * apart on the device.
     */
    private void planBlocks(int l, int kind, int j, int t, StoredRun run, Buffer buf, int first, int end, int from,
                            int to) {
        int block = buf.tokensPerSlot;
        long rows = (long) (end - first) * run.heads();
        for (int k = from / block; k * block < to; k++) {
            int start = Math.max(from, k * block);
            int stop = Math.min(to, (k + 1) * block);
            long width = (stop - start) * buf.rowBytes;
            long at = stagingOffset(rows * width);
            writes.add(l, kind, j, t, run, first, end, start, stop, at, run.heads() * width, buf.rowBytes, width);
            pending.add(at, buf.address + k * buf.bytesPerSlot + first * buf.perSequence
                    + (start - (long) k * block) * buf.rowBytes, block * buf.rowBytes, width, rows);
        }
    }

    /** Carries out the planned writes into staging, on several threads when they move enough rows to pay. */
    private void writePlanned() {
        int n = writes.size();
        if (writes.rows() >= PARALLEL_ROWS && n > 1) {
            IntStream.range(0, n).parallel().forEach(this::writePlanned);
        } else {
            for (int i = 0; i < n; i++) {
                writePlanned(i);
            }
        }
    }

    private void writePlanned(int i) {
        RowScratch rows = scratch.get();
        PlannedWrites w = writes;
        int first = w.word(i, PlannedWrites.FIRST_SEQUENCE);
        int layer = w.word(i, PlannedWrites.LAYER);
        for (int b = first; b < w.word(i, PlannedWrites.END_SEQUENCE); b++) {
            write(histories.get(b)[layer], w.word(i, PlannedWrites.GROUP), w.word(i, PlannedWrites.KIND),
                    w.word(i, PlannedWrites.TENSOR), w.run(i), w.word(i, PlannedWrites.FROM),
                    w.word(i, PlannedWrites.TO), staging, w.longWord(i, PlannedWrites.OFFSET)
                            + (b - first) * w.longWord(i, PlannedWrites.SEQUENCE_STRIDE),
                    w.longWord(i, PlannedWrites.PITCH), w.longWord(i, PlannedWrites.HEAD_PITCH), rows);
        }
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
                        if (buf.bytesPerSlot > 0 && (slots > 0 || buf.blocked)) {
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
     * sequence into {@code dst} at {@code offset}, consecutive token slots {@code pitch} bytes apart and, within one,
     * the heads' rows {@code headPitch} apart (groups along tokens: heads side by side).
     */
    private void write(StoredHistory history, int group, int kind, int tensor, StoredRun run, int from, int to,
                       MemorySegment dst, long offset, long pitch, long headPitch, RowScratch rows) {
        if (history.isRaw()) {
            if (tensor == 0) {
                writeRaw(history.raw(kind == 0), from, to, dst, offset, pitch, headPitch, run.bits() == 16, rows);
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
                CanonicalRows.codes(block, t0, n, dst, offset + (long) (start - from) * pitch, pitch, headPitch,
                        rows.codes, rows.columns);
            } else if (run.axis() == StoredRun.GroupAxis.TOKEN) {
                CanonicalRows.tokenParams(block, tensor == 1, t0, n, run.groupSize(), dst,
                        offset + (long) (start - from) * pitch, pitch, headPitch, run.halfParams());
            } else {
                CanonicalRows.channelParams(block, tensor == 1, t0, n, run.groupSize(), dst,
                        offset + (long) (start - from) / run.groupSize() * pitch, pitch, run.halfParams());
            }
        });
    }

    /** Rows of an unquantized history in the model's K/V dtype. */
    private void writeRaw(KvView src, int from, int to, MemorySegment dst, long offset, long pitch, long headPitch,
                          boolean half, RowScratch rows) {
        for (int t = from; t < to; t++) {
            long at = offset + (long) (t - from) * pitch;
            for (int h = 0; h < src.heads(); h++) {
                putRow(src, h, t, dst, at + h * headPitch, half, rows);
            }
        }
    }

    /**
     * Writes row {@code (h, t)} of {@code src} ({@code dim} floats) at byte {@code at} of {@code dst}, as float16 or
     * float32: in bulk through arrays, since every step writes a row per sequence, layer, kind and head.
     */
    private void putRow(KvView src, int h, int t, MemorySegment dst, long at, boolean half, RowScratch rows) {
        long from = src.rowIndex(h, t) * Float.BYTES;
        if (!half) {
            MemorySegment.copy(src.segment(), from, dst, at, (long) dim * Float.BYTES);
            return;
        }
        float[] floats = rows.floats;
        short[] halves = rows.halves;
        MemorySegment.copy(src.segment(), F32, from, floats, 0, dim);
        for (int d = 0; d < dim; d++) {
            halves[d] = Float.floatToFloat16(floats[d]);
        }
        MemorySegment.copy(halves, 0, dst, F16, at, dim);
    }

    /**
     * Writes the residual rows that changed since the last sync into staging and uploads them. In a decode step every
     * sequence adds the same rows (one token each), and they are one band of the buffer ({@code [layer, kind,
     * sequence, head]} rows of {@code R} tokens): one strided upload of the new tokens, not the whole window.
     */
    private void syncResiduals() {
        long rows = 0;
        boolean band = true;   // every sequence adds the same rows, sequence 0's
        for (int b = 0; b < batch; b++) {
            int q = synced[b];
            int r = caches.get(b).length(0) - q;
            int fromToken = q != lastQuantized[b] || r < lastResidual[b] ? 0 : lastResidual[b];
            residualFrom[b] = Math.min(fromToken, r);
            lastQuantized[b] = q;
            lastResidual[b] = r;
            rows += r - residualFrom[b];
            band &= r > residualFrom[b] && residualFrom[b] == residualFrom[0] && r == lastResidual[0];
        }
        if (rows == 0) {
            return;
        }
        if (rows * layers * heads >= PARALLEL_ROWS && batch > 1) {
            IntStream.range(0, batch).parallel().forEach(this::writeResiduals);
        } else {
            for (int b = 0; b < batch; b++) {
                writeResiduals(b);
            }
        }
        // rows no upload wrote are zeros on both sides: device memory is allocated zero-filled, staging too
        if (band) {
            long rowBytes = (long) dim * elementBytes();
            long width = (lastResidual[0] - residualFrom[0]) * rowBytes;
            long height = (long) layers * 2 * batch * heads;
            memory.upload2d(residualStaging, residualFrom[0] * rowBytes, residual * rowBytes,
                    residualDevice + residualFrom[0] * rowBytes, residual * rowBytes, width, height);
            uploadedBytes += width * height;
        } else {
            memory.upload(residualStaging, 0, residualDevice, residualBytes);
            uploadedBytes += residualBytes;
        }
    }

    /** Writes sequence {@code b}'s residual rows {@code [residualFrom[b], lastResidual[b])} of every layer. */
    private void writeResiduals(int b) {
        int fromToken = residualFrom[b];
        if (lastResidual[b] <= fromToken) {
            return;
        }
        for (int l = 0; l < layers; l++) {
            StoredHistory history = histories.get(b)[l];
            int head = 0;
            for (int g = 0; g < history.groups(); g++) {
                writeResidual(history.residual(g, true), l, 0, b, head, fromToken);
                writeResidual(history.residual(g, false), l, 1, b, head, fromToken);
                head += history.groupHeads(g);
            }
        }
    }

    private void writeResidual(KvView src, int layer, int kind, int b, int firstHead, int fromToken) {
        RowScratch rows = scratch.get();
        for (int h = 0; h < src.heads(); h++) {
            long base = residualOffset(layer, kind, b) + ((long) (firstHead + h) * residual) * dim * elementBytes();
            for (int t = fromToken; t < src.tokens(); t++) {
                putRow(src, h, t, residualStaging, base + (long) t * dim * elementBytes(), halfResidual, rows);
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

    /**
     * Staging of at least {@code bytes} for one sync's pieces, reserved once per sync after {@link #settle}, so no
     * upload reads the staging being replaced and none of the sync's pieces is handed over yet.
     */
    private void reserveStaging(long bytes) {
        if (staging.byteSize() < bytes) {
            if (staging.byteSize() > 0) {
                memory.freeStaging(staging);
            }
            staging = memory.staging(Math.max(bytes, staging.byteSize() * 2));
        }
    }

    /**
     * The offset in {@link #staging} of {@code bytes} for one piece, within what {@link #reserveStaging} reserved.
     * No clearing: every writer covers all its bytes (bit-packed rows clear themselves before packing).
     */
    private long stagingOffset(long bytes) {
        long at = stagingUsed;
        stagingUsed += alignedPiece(bytes);
        return at;
    }

    private static long alignedPiece(long bytes) {
        return (bytes + 63) & ~63L;
    }

    /** Waits for the uploads in flight, so that staging (the residual's too) may be written again. */
    private void settle() {
        memory.synchronize();
        stagingUsed = 0;
    }

    private void ensureCapacity(int tokens) {
        if (tokens <= capacity) {
            return;
        }
        int used = quantizedLength();
        int reserved = 0;
        for (int r : reserves) {
            reserved = Math.max(reserved, r);
        }
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
        settle();
        for (Buffer b : buffers) {
            if (b.address != 0) {
                memory.free(b.address);
                b.address = 0;
            }
        }
        freeResiduals();
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

    /**
     * One device buffer, {@code [capacity / tokensPerSlot, ...]} of {@code bytesPerSlot} bytes per slot. A blocked
     * buffer's slot is a token block, {@code [batch, heads, tokensPerSlot, rowBytes]}.
     */
    private final class Buffer {
        /** Bytes of one sequence in one slot. */
        final long perSequence;
        /** Bytes of one slot: every sequence's. */
        long bytesPerSlot;
        final int tokensPerSlot;
        final DeviceMemory.Element element;
        /** Bytes of one head's row in a slot. */
        final long rowBytes;
        /** Whether a slot keeps each head's tokens side by side, so a token fills only part of one. */
        final boolean blocked;
        long address;
        long allocated;

        Buffer(long perSequence, int tokensPerSlot, DeviceMemory.Element element, long rowBytes, boolean blocked) {
            this.perSequence = perSequence;
            this.bytesPerSlot = batch * perSequence;
            this.tokensPerSlot = tokensPerSlot;
            this.element = element;
            this.rowBytes = rowBytes;
            this.blocked = blocked;
        }

        /**
         * Moves to a layout of {@code newBatch} sequences and {@code tokens} token capacity (0: none allocated),
         * copying the first {@code usedTokens} tokens of the kept sequences, runs of consecutive ones at once.
         */
        void relayout(int oldBatch, int newBatch, int[] keep, int tokens, int usedTokens) {
            long newPerSlot = newBatch * perSequence;
            long next = 0;
            long bytes = tokens > 0 ? Math.max(element.size(), (long) tokens / tokensPerSlot * newPerSlot) : 0;
            if (tokens > 0) {
                next = memory.allocate(bytes, element);
            }
            long slots = (long) usedTokens / tokensPerSlot;
            if (address != 0 && next != 0 && slots > 0 && perSequence > 0) {
                for (int i = 0; i < keep.length; ) {
                    int j = i + 1;
                    while (j < keep.length && keep[j] == keep[j - 1] + 1) {
                        j++;
                    }
                    memory.copy2d(address + keep[i] * perSequence, oldBatch * perSequence, next + i * perSequence,
                            newPerSlot, (j - i) * perSequence, slots);
                    i = j;
                }
            }
            if (address != 0) {
                memory.free(address);
            }
            address = next;
            allocated = bytes;
            bytesPerSlot = newPerSlot;
        }

        void grow(int tokens, int usedTokens) {
            long bytes = Math.max(element.size(), (long) tokens / tokensPerSlot * bytesPerSlot);
            long next = memory.allocate(bytes, element);
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

    /** One thread's scratch for a row: its codes, and its floats on the way to float16; codes of 64 tokens. */
    private static final class RowScratch {
        final int[] codes;
        final int[] columns;
        final float[] floats;
        final short[] halves;

        RowScratch(int dim) {
            codes = new int[dim];
            columns = new int[dim * 64];
            floats = new float[dim];
            halves = new short[dim];
        }
    }

    /**
     * The writes of one sync, in reused arrays (a step plans about one per buffer), {@value #WORDS} words each: tensor
     * {@code tensor} of run {@code group} of a layer's keys or values, tokens {@code [from, to)} of sequences
     * {@code [firstSequence, endSequence)}, the first at {@code offset} in staging and each next one
     * {@code sequenceStride} further, token slots {@code pitch} apart and heads {@code headPitch} apart within one.
     */
    private static final class PlannedWrites {
        static final int WORDS = 12;
        private static final int LAYER = 0;
        private static final int KIND = 1;
        private static final int GROUP = 2;
        private static final int TENSOR = 3;
        private static final int FIRST_SEQUENCE = 4;
        private static final int END_SEQUENCE = 5;
        private static final int FROM = 6;
        private static final int TO = 7;
        private static final int OFFSET = 8;
        private static final int SEQUENCE_STRIDE = 9;
        private static final int PITCH = 10;
        private static final int HEAD_PITCH = 11;
        private long[] words = new long[16 * WORDS];
        private StoredRun[] runs = new StoredRun[16];
        private int size;
        private long rows;

        void clear() {
            size = 0;
            rows = 0;
        }

        int size() {
            return size;
        }

        /** Rows (sequence, head, token) the planned writes move. */
        long rows() {
            return rows;
        }

        void add(int layer, int kind, int group, int tensor, StoredRun run, int firstSequence, int endSequence,
                 int from, int to, long offset, long sequenceStride, long pitch, long headPitch) {
            if (size == runs.length) {
                runs = java.util.Arrays.copyOf(runs, size * 2);
                words = java.util.Arrays.copyOf(words, size * 2 * WORDS);
            }
            runs[size] = run;
            int at = size++ * WORDS;
            words[at + LAYER] = layer;
            words[at + KIND] = kind;
            words[at + GROUP] = group;
            words[at + TENSOR] = tensor;
            words[at + FIRST_SEQUENCE] = firstSequence;
            words[at + END_SEQUENCE] = endSequence;
            words[at + FROM] = from;
            words[at + TO] = to;
            words[at + OFFSET] = offset;
            words[at + SEQUENCE_STRIDE] = sequenceStride;
            words[at + PITCH] = pitch;
            words[at + HEAD_PITCH] = headPitch;
            rows += (long) (endSequence - firstSequence) * run.heads() * (to - from);
        }

        StoredRun run(int i) {
            return runs[i];
        }

        int word(int i, int field) {
            return (int) words[i * WORDS + field];
        }

        long longWord(int i, int field) {
            return words[i * WORDS + field];
        }
    }
}
