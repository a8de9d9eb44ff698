package dev.kvq.generate;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.cache.KvCache;
import dev.kvq.config.Placement;
import dev.kvq.generate.device.DeviceStore;
import dev.kvq.generate.spi.QuantizedDecoder;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.QuantizedStep;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.spi.PastBuffers;
import dev.kvq.generate.spi.Step;
import dev.kvq.generate.spi.StepInput;
import dev.kvq.tensor.KvView;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Objects;
import java.util.stream.IntStream;

/**
 * The prefill/decode loop shared by every runtime: a batch of sequences, each with its own KV cache. Each
 * {@link #feed} runs one forward pass and appends the new tokens' K/V to each cache, which quantizes them as its
 * policy says. Under {@link Placement#HOST} every step first materializes every cache into the runtime's past buffers
 * (left-padded to the longest); under {@link Placement#DEVICE} the caches are mirrored in the runtime's memory
 * ({@link DeviceStore}) and the model reads them in place, so a step moves only new tokens. Not thread-safe.
 */
public final class DecodeSession implements AutoCloseable {
    /**
     * Values (token x layer x KV head x channel, keys and values counted once) in one feed of two or more sequences
     * from which their caches take them in parallel: quantizing on the host is most of what a step costs besides the
     * model once the cache lives on the device, and a decode step of the 1B shape (16 layers of 8 heads of 64) already
     * holds 8,192 per sequence.
     */
    static final long PARALLEL_APPEND_VALUES = 8192;

    private final Decoder decoder;
    private final List<KvCache> caches;
    private final int layers;
    private final int vocab;
    private int[] lengths;
    /** Rows 0..batch-1: the sequences of a step that runs them all (every decode step). */
    private int[] everyRow;
    private final Placement placement;
    /** Under placement device: the decoder reading the quantized history, and the history's mirror (from the first
     * sequence on). */
    private QuantizedDecoder quantized;
    private DeviceStore store;
    private long materializeNanos;
    private long forwardNanos;
    private long appendNanos;
    private long transferBytes;
    private long steps;
    // per-step inputs, reused
    private long[] ids = new long[0];
    private long[] mask = new long[0];
    private long[] positions = new long[0];
    private long[] quantizedCounts = new long[0];
    private long[] residualCounts = new long[0];

    public DecodeSession(Decoder decoder, List<KvCache> caches) {
        this(decoder, caches, Placement.HOST);
    }

    /** A session whose caches live where {@code placement} says; caches must be empty under placement device. */
    public DecodeSession(Decoder decoder, List<KvCache> caches, Placement placement) {
        this(decoder, caches, placement, false);
    }

    /**
     * An empty session on the host that sequences join ({@link #add}) and leave ({@link #remove}) between steps, each
     * with its own cache: continuous batching.
     */
    public DecodeSession(Decoder decoder) {
        this(decoder, Placement.HOST);
    }

    /**
     * An empty session whose caches live where {@code placement} says, that sequences join ({@link #add}) and leave
     * ({@link #remove}) between steps: continuous batching. Under placement device every cache must have the first
     * one's layout (one configuration).
     */
    public DecodeSession(Decoder decoder, Placement placement) {
        this(decoder, List.of(), placement, true);
    }

    private DecodeSession(Decoder decoder, List<KvCache> caches, Placement placement, boolean mayStartEmpty) {
        if (caches.isEmpty() && !mayStartEmpty) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "a session needs at least one sequence");
        }
        this.decoder = decoder;
        this.caches = new ArrayList<>(caches);
        this.layers = decoder.config().layers();
        this.vocab = decoder.config().vocabSize();
        this.lengths = new int[caches.size()];
        this.everyRow = IntStream.range(0, caches.size()).toArray();
        this.placement = placement;
        if (placement == Placement.DEVICE && !caches.isEmpty()) {
            for (KvCache c : caches) {
                if (c.length(0) != 0) {
                    throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "placement device starts from empty caches");
                }
            }
            openStore(layoutOf(caches.getFirst()), caches);
        }
    }

    /** The quantized decoder for {@code layout} and the device store mirroring {@code members}. */
    private void openStore(QuantizedPastLayout layout, List<KvCache> members) {
        this.quantized = decoder.quantized(layout);
        // the store lays the history out as the decoder reads it (its rows may come in token blocks)
        this.store = new DeviceStore(quantized.memory(), quantized.layout(), members, quantized.halfKv());
    }

    private QuantizedPastLayout layoutOf(KvCache cache) {
        return DeviceFootprint.layoutOf(decoder, cache);
    }

    public Placement placement() {
        return placement;
    }

    /**
     * Sizes storage for {@code tokens} tokens per sequence at once, so a run that knows its length allocates exactly
     * once: the caches' growable buffers (a full-precision cache doubling at a power of two would copy its whole
     * history inside one step) and, under placement device, the device buffers.
     */
    public void reserve(int tokens) {
        for (KvCache cache : caches) {
            cache.reserve(tokens);
        }
        if (store != null) {
            store.reserve(tokens);
        }
    }

    /** Bytes the caches hold in the runtime's memory (placement device), else 0. */
    public long deviceBytes() {
        return store == null ? 0 : store.deviceBytes();
    }

    /** The most bytes the runtime's memory for this session's decoder held at once (placement device), else 0. */
    public long peakDeviceBytes() {
        return quantized == null ? 0 : quantized.memory().peakBytesAllocated();
    }

    /** Bytes used on the whole device where the runtime can tell. */
    public java.util.OptionalLong deviceBytesInUse() {
        return quantized == null ? java.util.OptionalLong.empty() : quantized.memory().deviceBytesInUse();
    }

    /**
     * Bytes moved between host memory and the runtime so far: past tensors handed over and present tensors read back
     * (host), or new quantized tokens, residuals, new tokens' K/V (device); plus token inputs and logits.
     */
    public long transferBytes() {
        return transferBytes;
    }

    /** Forward steps run so far. */
    public long steps() {
        return steps;
    }

    public int batch() {
        return caches.size();
    }

    /** Tokens held for sequence {@code b}. */
    public int length(int b) {
        return lengths[b];
    }

    public KvCache cache(int b) {
        return caches.get(b);
    }

    /**
     * Adds {@code cache} (empty: the sequence starts with its prompt) as the last sequence, which the next
     * {@link #feed} can prefill while the others wait; returns its index.
     */
    public int add(KvCache cache) {
        return add(cache, 0);
    }

    /**
     * Adds {@code cache} as {@link #add(KvCache)} does, with storage sized at once for {@code reserveTokens} tokens
     * (its cache's, and under placement device its rows of the device store). Under placement device the cache must
     * be empty and configured as the session's others.
     */
    public int add(KvCache cache, int reserveTokens) {
        if (placement == Placement.DEVICE) {
            if (cache.length(0) != 0) {
                throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "under placement device a sequence joins with an "
                        + "empty cache, this one holds " + cache.length(0) + " tokens");
            }
            QuantizedPastLayout layout = layoutOf(cache);
            if (store == null) {
                openStore(layout, List.of());
            } else if (!layout.withTokenBlock(store.layout().tokenBlock()).equals(store.layout())) {
                // the store's layout is the members' as configured, in the token blocks the decoder reads
                throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "under placement device every sequence's cache "
                        + "must be configured as the first one's (one layout of the quantized history on the device)");
            }
        }
        if (reserveTokens > 0) {
            cache.reserve(reserveTokens);
        }
        if (store != null) {
            store.add(cache, reserveTokens);
        }
        caches.add(cache);
        lengths = Arrays.copyOf(lengths, caches.size());
        lengths[caches.size() - 1] = cache.length(0);
        everyRow = IntStream.range(0, caches.size()).toArray();
        return caches.size() - 1;
    }

    /**
     * Removes sequence {@code b} and closes its cache, freeing its memory now (under placement device, its rows of
     * the device store too); the sequences after it move down one index.
     */
    public void remove(int b) {
        Objects.checkIndex(b, caches.size());
        if (store != null) {
            store.remove(b);
        }
        KvCache cache = caches.remove(b);
        System.arraycopy(lengths, b + 1, lengths, b, lengths.length - b - 1);
        lengths = Arrays.copyOf(lengths, caches.size());
        everyRow = Arrays.copyOf(everyRow, caches.size());
        cache.close();
    }

    /**
     * Feeds {@code tokens[b]} to sequence {@code b} (an empty array leaves it untouched) and returns the logits of every
     * fed position ({@code allPositions}) or of the last one only.
     *
     * @return {@code logits[b][i]} for the i-th returned position of sequence b (vocabulary floats)
     */
    public float[][][] feed(int[][] tokens, boolean allPositions) {
        int batch = caches.size();
        if (tokens.length != batch) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, tokens.length + " token rows for " + batch + " sequences");
        }
        int t = 0;
        int p = 0;
        for (int b = 0; b < batch; b++) {
            t = Math.max(t, tokens[b].length);
            p = Math.max(p, lengths[b]);
        }
        if (t == 0) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "nothing to feed: every token row is empty");
        }
        int[] sequence = stepRows(tokens);
        // a step of only fresh sequences (a subset of the rows) has no past of theirs to attend to
        int chunk = largestChunk(sequence.length, sequence.length < batch ? 0 : p, t);
        if (chunk < t) {
            return feedInChunks(tokens, allPositions, chunk, t);
        }
        if (store != null) {
            return feedDevice(tokens, t, allPositions, sequence);
        }
        int rows = sequence.length;
        if (rows < batch) {
            p = 0;
        }
        ids = cleared(ids, rows * t);
        mask = cleared(mask, rows * (p + t));
        positions = cleared(positions, rows * t);
        for (int i = 0; i < rows; i++) {
            int b = sequence[i];
            fillTokens(tokens[b], b, i, t, p + t, p);
            for (int k = p - lengths[b]; k < p; k++) {
                mask[i * (p + t) + k] = 1;
            }
        }
        long start = System.nanoTime();
        PastBuffers past = decoder.past(rows, p);
        for (int i = 0; i < rows; i++) {
            int b = sequence[i];
            int padPast = p - lengths[b];
            KvCache cache = caches.get(b);
            for (int l = 0; l < layers; l++) {
                KvView k = past.keys(l, i);
                KvView v = past.values(l, i);
                if (padPast > 0) {
                    k.tokens(0, padPast).zero();
                    v.tokens(0, padPast).zero();
                }
                if (lengths[b] > 0) {
                    cache.materialize(l, k.tokens(padPast, p), v.tokens(padPast, p));
                }
            }
        }
        long afterMaterialize = System.nanoTime();
        Step step = decoder.forward(new StepInput(rows, t, p, ids, mask, positions, past));
        long afterForward = System.nanoTime();
        appendNewTokens(step, tokens, sequence, t);
        long afterAppend = System.nanoTime();
        int kvBytes = decoder.halfKv() ? 2 : 4;
        transferBytes += 2L * layers * rows * heads() * (2L * p + t) * dim() * kvBytes;
        transferBytes += inputAndLogitBytes(rows, t, p + t);
        steps++;
        materializeNanos += afterMaterialize - start;
        forwardNanos += afterForward - afterMaterialize;
        appendNanos += afterAppend - afterForward;
        return logits(step, tokens, sequence, t, allPositions);
    }

    /**
     * How many of {@code tokens} new tokens one step of {@code rows} rows can take now, within the runtime's limit
     * on attention scores ({@link Decoder#maxAttentionScores()}); {@link #feed} splits a larger feed into such steps.
     */
    public int tokensPerStep(int rows, int tokens) {
        int longest = 0;
        for (int length : lengths) {
            longest = Math.max(longest, length);
        }
        return largestChunk(rows, longest, tokens);
    }

    /**
     * The most new tokens a step of {@code rows} rows may take so that its attention scores stay within the
     * runtime's limit ({@link Decoder#maxAttentionScores()}) while the longest sequence, now {@code longest} tokens,
     * grows by up to {@code t}.
     */
    private int largestChunk(int rows, int longest, int t) {
        long limit = decoder.maxAttentionScores();
        if (limit == Long.MAX_VALUE) {
            return t;
        }
        // on the device: the store at its longest plus the new tokens, a bound (the last chunk presents less)
        long positions = store == null ? (long) longest + t : store.presentedPositions(longest + t) + (long) t;
        long perToken = (long) rows * decoder.config().attentionHeads() * positions;
        return (int) Math.max(1, Math.min(t, limit / perToken));
    }

    /**
     * Feeds each sequence's tokens {@code chunk} at a time (the first {@code chunk} of every sequence, then the next),
     * as {@link #feed} returns them: every fed position's logits, or each sequence's last.
     */
    private float[][][] feedInChunks(int[][] tokens, boolean allPositions, int chunk, int longest) {
        int batch = tokens.length;
        float[][][] out = new float[batch][][];
        List<List<float[]>> all = new ArrayList<>();
        for (int b = 0; b < batch; b++) {
            out[b] = new float[0][];
            all.add(new ArrayList<>());
        }
        int[][] part = new int[batch][];
        for (int from = 0; from < longest; from += chunk) {
            for (int b = 0; b < batch; b++) {
                int n = tokens[b].length;
                part[b] = from >= n ? new int[0] : Arrays.copyOfRange(tokens[b], from, Math.min(n, from + chunk));
            }
            float[][][] logits = feed(part, allPositions);
            for (int b = 0; b < batch; b++) {
                if (part[b].length > 0) {
                    if (allPositions) {
                        all.get(b).addAll(Arrays.asList(logits[b]));
                    } else {
                        out[b] = logits[b];
                    }
                }
            }
        }
        if (allPositions) {
            for (int b = 0; b < batch; b++) {
                out[b] = all.get(b).toArray(new float[0][]);
            }
        }
        return out;
    }

    /**
     * The sequences a step runs, in row order: those given tokens when every one of them starts its sequence (a
     * prefill of some sequences while the others wait, so a large batch can be prefilled a few at a time), else all,
     * empty rows as padding.
     */
    private int[] stepRows(int[][] tokens) {
        int batch = caches.size();
        int fed = 0;
        boolean fresh = true;
        for (int b = 0; b < batch; b++) {
            if (tokens[b].length > 0) {
                fed++;
                fresh &= lengths[b] == 0;
            }
        }
        if (!fresh || fed == batch) {
            return everyRow;
        }
        int[] sequence = new int[fed];
        for (int b = 0, i = 0; b < batch; b++) {
            if (tokens[b].length > 0) {
                sequence[i++] = b;
            }
        }
        return sequence;
    }

    /** Writes sequence {@code b}'s new tokens as row {@code row}: left-padded ids and positions, and their mask. */
    private void fillTokens(int[] fed, int b, int row, int t, int maskLength, int maskOffset) {
        int pad = t - fed.length;
        for (int k = 0; k < fed.length; k++) {
            int id = fed[k];
            if (id < 0 || id >= vocab) {
                throw new KvqException(ErrorCode.TOKENIZER, "token id " + id + " is outside the model's vocabulary of "
                        + vocab);
            }
            ids[row * t + pad + k] = id;
            positions[row * t + pad + k] = lengths[b] + k;
            mask[row * maskLength + maskOffset + pad + k] = 1;
        }
    }

    private void appendNewTokens(Step step, int[][] tokens, int[] sequence, int t) {
        int fed = 0;
        long work = 0;
        for (int b : sequence) {
            fed += tokens[b].length > 0 ? 1 : 0;
            work += tokens[b].length;
        }
        work *= (long) layers * heads() * dim();
        if (fed > 1 && work >= PARALLEL_APPEND_VALUES && step.concurrentViews()) {
            // each sequence's cache on its own thread (caches are independent, quantizers shareable)
            IntStream.range(0, sequence.length).parallel()
                    .forEach(i -> appendSequence(step, tokens, sequence, i, t));
        } else {
            for (int i = 0; i < sequence.length; i++) {
                appendSequence(step, tokens, sequence, i, t);
            }
        }
    }

    private void appendSequence(Step step, int[][] tokens, int[] sequence, int i, int t) {
        int b = sequence[i];
        int real = tokens[b].length;
        if (real == 0) {
            return;
        }
        KvCache cache = caches.get(b);
        for (int l = 0; l < layers; l++) {
            cache.append(l, step.newKeys(l, i).tokens(t - real, t), step.newValues(l, i).tokens(t - real, t));
        }
        lengths[b] += real;
    }

    private float[][][] logits(Step step, int[][] tokens, int[] sequence, int t, boolean allPositions) {
        float[][][] out = new float[caches.size()][][];
        for (int i = 0; i < sequence.length; i++) {
            int b = sequence[i];
            int real = tokens[b].length;
            int count = real == 0 ? 0 : allPositions ? real : 1;
            out[b] = new float[count][];
            for (int k = 0; k < count; k++) {
                float[] row = new float[vocab];
                step.logits(i, t - count + k, row);
                out[b][k] = row;
            }
        }
        for (int b = 0; b < out.length; b++) {
            if (out[b] == null) {
                out[b] = new float[0][];
            }
        }
        return out;
    }

    private int heads() {
        return decoder.config().kvHeads();
    }

    private int dim() {
        return decoder.config().headDim();
    }

    private long inputAndLogitBytes(int rows, int t, int maskLength) {
        return (long) rows * (2L * t + maskLength) * Long.BYTES + (long) rows * vocab * Float.BYTES;
    }

    /** {@code a} zeroed when it has {@code n} elements (the usual step), else a new array of {@code n}. */
    private static long[] cleared(long[] a, int n) {
        if (a.length != n) {
            return new long[n];
        }
        Arrays.fill(a, 0L);
        return a;
    }

    /** A step over the device-resident history: the model reads the mirrored caches in place. */
    private float[][][] feedDevice(int[][] tokens, int t, boolean allPositions, int[] sequence) {
        int rows = sequence.length;
        boolean subset = rows < caches.size();
        int quantizedLength = subset ? 0 : store.quantizedLength();
        int residual = store.residualLength();
        ids = cleared(ids, rows * t);
        mask = cleared(mask, rows * t);
        positions = cleared(positions, rows * t);
        if (quantizedCounts.length != rows) {
            quantizedCounts = new long[rows];
            residualCounts = new long[rows];
        }
        for (int i = 0; i < rows; i++) {
            int b = sequence[i];
            fillTokens(tokens[b], b, i, t, t, 0);
            // a sequence's quantized tokens fill slots [0, q) of the quantized region, its residual [0, r) of the
            // residual region; the model builds the rest of the mask from these counts
            quantizedCounts[i] = subset ? 0 : store.quantized(b);
            residualCounts[i] = subset ? 0 : store.residualTokens(b);
        }
        long start = System.nanoTime();
        long uploadedBefore = store.uploadedBytes();
        Step step = quantized.forward(new QuantizedStep(rows, t, quantizedLength, residual, ids, mask, quantizedCounts,
                residualCounts, positions, store.pastAddresses()));
        long afterForward = System.nanoTime();
        appendNewTokens(step, tokens, sequence, t);
        store.sync();
        long afterAppend = System.nanoTime();
        int kvBytes = quantized.halfKv() ? 2 : 4;
        transferBytes += store.uploadedBytes() - uploadedBefore;
        transferBytes += 2L * layers * rows * heads() * t * dim() * kvBytes;
        transferBytes += inputAndLogitBytes(rows, t, t + 2);
        steps++;
        forwardNanos += afterForward - start;
        appendNanos += afterAppend - afterForward;
        return logits(step, tokens, sequence, t, allPositions);
    }

    /** Time spent so far filling past buffers from the caches (dequantization), in the runtime, and appending to caches. */
    public Timings timings() {
        return new Timings(materializeNanos, forwardNanos, appendNanos);
    }

    /** Bytes held by all caches now. */
    public long bytesHeld() {
        return caches.stream().mapToLong(KvCache::bytesHeld).sum();
    }

    public long bytesFp16() {
        return caches.stream().mapToLong(KvCache::bytesFp16).sum();
    }

    @Override
    public void close() {
        if (store != null) {
            store.close();
        }
        caches.forEach(KvCache::close);
    }

    /** Cumulative nanoseconds per phase of the loop. */
    public record Timings(long materializeNanos, long forwardNanos, long appendNanos) {
    }
}
