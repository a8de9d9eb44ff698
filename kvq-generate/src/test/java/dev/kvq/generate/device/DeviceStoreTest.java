package dev.kvq.generate.device;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.KvqException;
import dev.kvq.cache.KvCache;
import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.LayerBits;
import dev.kvq.config.ModelShape;
import dev.kvq.config.Placement;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.StoredLayer;
import dev.kvq.generate.spi.StoredRun;
import dev.kvq.spi.AffineForm;
import dev.kvq.spi.BitPacking;
import dev.kvq.tensor.KvView;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

/**
 * The device mirror holds exactly the cache's history: decoding its canonical tensors by {@link StoredRun}'s formulas
 * (written here independently of the store) gives, for every sequence, layer and step, what the cache materializes.
 */
class DeviceStoreTest {
    private static final ModelShape SHAPE = new ModelShape(3, 4, 64);
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final ValueLayout.OfShort F16 = ValueLayout.JAVA_SHORT_UNALIGNED;

    static Stream<Arguments> configs() {
        Map<Integer, LayerBits> mix = new LinkedHashMap<>();
        mix.put(0, new LayerBits(8, 4));
        mix.put(1, new LayerBits(4, 2));
        mix.put(2, new LayerBits(2, 2));
        Map<Integer, Map<Integer, LayerBits>> heads = new LinkedHashMap<>();
        for (int l = 0; l < 3; l++) {
            Map<Integer, LayerBits> h = new LinkedHashMap<>();
            for (int k = 0; k < 4; k++) {
                h.put(k, new LayerBits(k % 2 == 0 ? 4 : 8, k < 2 ? 2 : 4));
            }
            heads.put(l, h);
        }
        List<Arguments> plain = List.of(
                Arguments.of("per-token KV4", KvQuantConfig.perToken(4, 4)),
                Arguments.of("per-token KV8 float32 scales", KvQuantConfig.perToken(8, 8).scaleDtype("float32")),
                Arguments.of("per-token K4V2 residual 32 group 32", KvQuantConfig.perToken(4, 2).residualLength(32)
                        .groupSize(32)),
                Arguments.of("KIVI K4V2", KvQuantConfig.kivi(4, 2)),
                Arguments.of("KIVI per-layer mix", KvQuantConfig.kivi(4, 4).perLayer(mix, null)),
                Arguments.of("per-head mix", KvQuantConfig.perToken(4, 4).perHead(heads, null)));
        return withTokenBlocks(plain.stream());
    }

    /** Each configuration with rows one token at a time, then in blocks of 32 tokens (as kvq's attention reads). */
    private static Stream<Arguments> withTokenBlocks(Stream<Arguments> configs) {
        List<Arguments> all = configs.toList();
        return Stream.concat(all.stream().map(a -> Arguments.of(a.get()[0], a.get()[1], 1)),
                all.stream().map(a -> Arguments.of(a.get()[0] + ", token blocks of 32", a.get()[1], 32)));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("configs")
    void mirrorDecodesToTheCachesHistory(String name, KvQuantConfig.Builder builder, int tokenBlock) {
        KvQuantConfig config = builder.placement(Placement.DEVICE).build();
        List<KvCache> caches = new ArrayList<>();
        var spec = KvCaches.spec(config, SHAPE);
        for (int b = 0; b < 3; b++) {
            caches.add(spec.newCache());
        }
        QuantizedPastLayout layout = PastLayouts.of(caches.getFirst(), SHAPE.layers(), SHAPE.kvHeads(), SHAPE.headDim(),
                false).withTokenBlock(tokenBlock);
        SplittableRandom random = new SplittableRandom(name.hashCode());
        try (ArenaMemory memory = new ArenaMemory(); DeviceStore store = new DeviceStore(memory, layout, caches, false)) {
            int[] prompts = {37, 70, 0};
            for (int b = 0; b < caches.size(); b++) {
                append(caches.get(b), prompts[b], random);
            }
            store.sync();
            check(memory, layout, store, caches);
            long uploadsBefore = memory.uploads;
            for (int step = 0; step < 45; step++) {
                for (KvCache cache : caches) {
                    append(cache, 1, random);
                }
                long synchronizations = memory.synchronizations;
                store.sync();
                // uploads are queued, not waited for one by one: a step waits once, for the last step's
                assertEquals(synchronizations + 1, memory.synchronizations, "synchronizations in step " + step);
                check(memory, layout, store, caches);
            }
            assertTrue(memory.uploads > uploadsBefore, "decode steps upload new tokens");
            // the store holds about what the caches count, beyond the capacity it keeps free
            long held = caches.stream().mapToLong(KvCache::bytesHeld).sum();
            assertTrue(store.deviceBytes() > 0 && held > 0);
        }
        caches.forEach(KvCache::close);
    }

    @ParameterizedTest(name = "token block {0}")
    @ValueSource(ints = {1, 32})
    void fullPrecisionCacheIsMirroredRawInFloat16(int tokenBlock) {
        List<KvCache> caches = List.of(KvCaches.fullPrecision(SHAPE), KvCaches.fullPrecision(SHAPE));
        QuantizedPastLayout layout = PastLayouts.of(caches.getFirst(), SHAPE.layers(), SHAPE.kvHeads(), SHAPE.headDim(),
                true).withTokenBlock(tokenBlock);
        assertTrue(layout.layers().getFirst().keys().getFirst().raw());
        SplittableRandom random = new SplittableRandom(5);
        try (ArenaMemory memory = new ArenaMemory(); DeviceStore store = new DeviceStore(memory, layout, caches, true)) {
            append(caches.get(0), 9, random);
            append(caches.get(1), 4, random);
            store.sync();
            for (int step = 0; step < 5; step++) {
                for (KvCache c : caches) {
                    append(c, 1, random);
                }
                store.sync();
            }
            int t = store.quantizedLength();
            assertEquals(tokenBlock == 1 ? 14 : 32, t, "token slots: the longest sequence's, in whole blocks");
            memory.synchronize();
            long[] past = store.pastAddresses();
            int heads = SHAPE.kvHeads();
            int dim = SHAPE.headDim();
            for (int l = 0; l < SHAPE.layers(); l++) {
                MemorySegment keys = memory.at(past[l * 6], (long) t * 2 * heads * dim * 2);
                for (int b = 0; b < 2; b++) {
                    KvCache cache = caches.get(b);
                    try (Arena arena = Arena.ofConfined()) {
                        KvView expected = KvView.allocate(arena, heads, cache.length(l), dim);
                        KvView unused = KvView.allocate(arena, heads, cache.length(l), dim);
                        cache.materialize(l, expected, unused);
                        for (int p = 0; p < cache.length(l); p++) {
                            for (int h = 0; h < heads; h++) {
                                for (int d = 0; d < dim; d++) {
                                    float device = Float.float16ToFloat(keys.get(F16,
                                            (QuantizedPastLayout.row(p, tokenBlock, 2, b, heads, h) * dim + d) * 2));
                                    assertEquals(Float.float16ToFloat(Float.floatToFloat16(expected.get(h, p, d))),
                                            device, 0f);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("configs")
    void sequencesJoinAndLeaveBetweenSteps(String name, KvQuantConfig.Builder builder, int tokenBlock) {
        KvQuantConfig config = builder.placement(Placement.DEVICE).build();
        var spec = KvCaches.spec(config, SHAPE);
        QuantizedPastLayout layout = PastLayouts.of(spec.newCache(), SHAPE.layers(), SHAPE.kvHeads(), SHAPE.headDim(),
                false).withTokenBlock(tokenBlock);
        SplittableRandom random = new SplittableRandom(name.hashCode() + 1);
        List<KvCache> members = new ArrayList<>();
        List<Integer> reserves = new ArrayList<>();
        try (ArenaMemory memory = new ArenaMemory();
             DeviceStore store = new DeviceStore(memory, layout, List.of(), false)) {
            assertEquals(0, store.deviceBytes());
            // joins, prefills, decode steps, then a middle sequence leaves and another joins while the rest decode
            int[][] script = {{+1, 130, 41}, {+1, 120, 7}, {0, 0, 30}, {+1, 60, 13}, {0, 0, 12}, {-1, 1, 0}, {0, 0, 20},
                    {+1, 100, 33}, {-1, 0, 0}, {0, 0, 9}, {-1, 0, 0}, {-1, 0, 0}, {+1, 70, 5}, {0, 0, 3}};
            for (int[] act : script) {
                if (act[0] > 0) {
                    KvCache cache = spec.newCache();
                    store.add(cache, act[1]);
                    members.add(cache);
                    reserves.add(act[1]);
                    append(cache, act[2], random);
                    store.sync();
                } else if (act[0] < 0) {
                    store.remove(act[1]);
                    members.remove(act[1]).close();
                    reserves.remove(act[1]);
                } else {
                    for (int step = 0; step < act[2]; step++) {
                        for (KvCache cache : members) {
                            append(cache, 1, random);
                        }
                        store.sync();
                    }
                }
                assertEquals(members.size(), store.batch());
                check(memory, layout, store, members);
                // what the store holds is what its members reserved, by the same count a budget admits with
                int most = reserves.stream().mapToInt(Integer::intValue).max().orElse(0);
                assertEquals(DeviceStore.bytesFor(layout, false, members.size(), most), store.deviceBytes(),
                        "bytes after " + java.util.Arrays.toString(act));
                assertEquals(store.deviceBytes(), memory.bytesAllocated(), "the memory holds only the store's blocks");
            }
        }
        members.forEach(KvCache::close);
    }

    @ParameterizedTest(name = "token block {0}")
    @ValueSource(ints = {1, 32})
    void sequencesInLockstepShareOneUploadPerBuffer(int tokenBlock) {
        KvQuantConfig config = KvQuantConfig.perToken(4, 4).placement(Placement.DEVICE).build();
        var spec = KvCaches.spec(config, SHAPE);
        List<KvCache> caches = List.of(spec.newCache(), spec.newCache(), spec.newCache(), spec.newCache());
        QuantizedPastLayout layout = PastLayouts.of(caches.getFirst(), SHAPE.layers(), SHAPE.kvHeads(), SHAPE.headDim(),
                false).withTokenBlock(tokenBlock);
        SplittableRandom random = new SplittableRandom(3);
        try (ArenaMemory memory = new ArenaMemory(); DeviceStore store = new DeviceStore(memory, layout, caches, false)) {
            store.reserve(200);
            for (KvCache c : caches) {
                append(c, 40, random);
            }
            store.sync();
            long before = memory.uploads;
            for (KvCache c : caches) {
                append(c, 1, random);
            }
            store.sync();
            // three buffers (codes, scales, zeros) per layer and kind, whatever the batch (in blocks: the rows of
            // every sequence and head, a block apart, are one strided piece)
            assertEquals(SHAPE.layers() * 2 * 3, memory.uploads - before);
            check(memory, layout, store, caches);
        }
    }

    @Test
    void aStepOfSequencesAtDifferentLengthsIsOneBatchOfPieces() {
        KvQuantConfig config = KvQuantConfig.perToken(4, 4).placement(Placement.DEVICE).build();
        var spec = KvCaches.spec(config, SHAPE);
        List<KvCache> caches = List.of(spec.newCache(), spec.newCache(), spec.newCache());
        QuantizedPastLayout layout = PastLayouts.of(caches.getFirst(), SHAPE.layers(), SHAPE.kvHeads(), SHAPE.headDim(), false);
        SplittableRandom random = new SplittableRandom(5);
        try (ArenaMemory memory = new ArenaMemory(); DeviceStore store = new DeviceStore(memory, layout, caches, false)) {
            store.reserve(200);
            int[] prompts = {17, 40, 3};
            for (int b = 0; b < caches.size(); b++) {
                append(caches.get(b), prompts[b], random);
            }
            store.sync();
            for (int step = 0; step < 5; step++) {
                long batches = memory.batches;
                long pieces = memory.uploads;
                for (KvCache c : caches) {
                    append(c, 1, random);
                }
                store.sync();
                // every sequence's new token lands at its own slot: one piece per sequence and buffer, one batch
                assertEquals(batches + 1, memory.batches, "batches in step " + step);
                assertEquals(caches.size() * SHAPE.layers() * 2 * 3, memory.uploads - pieces, "pieces in step " + step);
                check(memory, layout, store, caches);
            }
        }
    }

    /** The configurations of {@link #configs} that fit any number of layers and heads. */
    static Stream<Arguments> uniformConfigs() {
        return configs().filter(a -> !((String) a.get()[0]).contains("mix"));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("uniformConfigs")
    void aLargeBatchIsWrittenOnSeveralThreadsAndItsResidualUploadedAsTheNewRowsOnly(String name,
                                                                                  KvQuantConfig.Builder builder,
                                                                                  int tokenBlock) {
        // the 1B shape at 24 sequences: a decode step writes more rows than DeviceStore.PARALLEL_ROWS
        ModelShape shape = new ModelShape(16, 8, 64);
        int batch = 24;
        assertTrue((long) batch * shape.layers() * shape.kvHeads() >= DeviceStore.PARALLEL_ROWS);
        var spec = KvCaches.spec(builder.placement(Placement.DEVICE).build(), shape);
        List<KvCache> caches = new ArrayList<>();
        for (int b = 0; b < batch; b++) {
            caches.add(spec.newCache());
        }
        QuantizedPastLayout layout = PastLayouts.of(caches.getFirst(), shape.layers(), shape.kvHeads(),
                shape.headDim(), false).withTokenBlock(tokenBlock);
        SplittableRandom random = new SplittableRandom(name.hashCode() + 2);
        try (ArenaMemory memory = new ArenaMemory(); DeviceStore store = new DeviceStore(memory, layout, caches, false)) {
            store.reserve(80);
            for (KvCache c : caches) {
                append(shape, c, 40, random);
            }
            store.sync();
            check(shape, memory, layout, store, caches);
            int r = store.residualLength();
            int residualSteps = 0;
            for (int step = 0; step < 3; step++) {
                for (KvCache c : caches) {
                    append(shape, c, 1, random);
                }
                long before = store.uploadedBytes();
                int quantizedBefore = store.quantized(0);
                store.sync();
                check(shape, memory, layout, store, caches);
                if (r > 0 && store.quantized(0) == quantizedBefore) {
                    // the step added one residual row per sequence, layer, kind and head: only those went up
                    long rows = 2L * shape.layers() * batch * shape.kvHeads();
                    assertEquals(rows * shape.headDim() * Float.BYTES, store.uploadedBytes() - before,
                            "bytes in step " + step);
                    residualSteps++;
                }
            }
            assertEquals(r > 0 ? 3 : 0, residualSteps, "steps that added to the residual only");
        }
        caches.forEach(KvCache::close);
    }

    @Test
    void aTokenBlockIsAPowerOfTwo() {
        KvCache cache = KvCaches.fullPrecision(SHAPE);
        QuantizedPastLayout layout = PastLayouts.of(cache, SHAPE.layers(), SHAPE.kvHeads(), SHAPE.headDim(), true);
        for (int bad : new int[] {0, 24, -8}) {
            KvqException e = assertThrows(KvqException.class, () -> layout.withTokenBlock(bad));
            assertTrue(e.getMessage().contains("power of two, not " + bad), e.getMessage());
        }
        assertEquals(64, layout.withTokenBlock(64).tokenBlock());
        cache.close();
    }

    @Test
    void hqqStridedGroupsAndWideCodesAreRefusedWithTheFix() {
        KvQuantConfig threeBits = KvQuantConfig.perToken(3, 3).placement(Placement.DEVICE).build();
        KvCache cache = KvCaches.spec(threeBits, SHAPE).newCache();
        KvqException e = assertThrows(KvqException.class,
                () -> PastLayouts.of(cache, SHAPE.layers(), SHAPE.kvHeads(), SHAPE.headDim(), false));
        assertTrue(e.getMessage().contains("3-bit") && e.getMessage().contains("placement host"), e.getMessage());
    }

    private static void append(KvCache cache, int tokens, SplittableRandom random) {
        append(SHAPE, cache, tokens, random);
    }

    private static void append(ModelShape shape, KvCache cache, int tokens, SplittableRandom random) {
        if (tokens == 0) {
            return;
        }
        for (int l = 0; l < shape.layers(); l++) {
            float[] k = new float[shape.kvHeads() * tokens * shape.headDim()];
            float[] v = new float[k.length];
            for (int i = 0; i < k.length; i++) {
                k[i] = (float) random.nextGaussian() * (1 + (i % 7));
                v[i] = (float) random.nextGaussian();
            }
            cache.append(l, KvView.of(k, shape.kvHeads(), tokens, shape.headDim()),
                    KvView.of(v, shape.kvHeads(), tokens, shape.headDim()));
        }
    }

    /** Decodes every sequence's mirror and compares it with the cache's materialized history. */
    private static void check(ArenaMemory memory, QuantizedPastLayout layout, DeviceStore store, List<KvCache> caches) {
        check(SHAPE, memory, layout, store, caches);
    }

    private static void check(ModelShape shape, ArenaMemory memory, QuantizedPastLayout layout, DeviceStore store,
                              List<KvCache> caches) {
        memory.synchronize(); // as a runtime does before a step reads the memory
        int batch = caches.size();
        int t = store.quantizedLength();
        int r = store.residualLength();
        long[] past = store.pastAddresses().clone();
        int heads = shape.kvHeads();
        int dim = shape.headDim();
        int i = 0;
        for (int l = 0; l < shape.layers(); l++) {
            StoredLayer sl = layout.layers().get(l);
            float[][][][][] dense = new float[2][batch][heads][t][dim];
            for (int kind = 0; kind < 2; kind++) {
                for (StoredRun run : kind == 0 ? sl.keys() : sl.values()) {
                    decodeRun(memory, run, layout.tokenBlock(), past[i], past[i + 1], past[i + 2], batch, t, dim,
                            dense[kind]);
                    i += 3;
                }
            }
            float[][][][][] residual = new float[2][batch][heads][r][dim];
            if (sl.residualCapacity() > 0) {
                for (int kind = 0; kind < 2; kind++) {
                    MemorySegment res = memory.at(past[i++], (long) batch * heads * r * dim * 4);
                    for (int b = 0; b < batch; b++) {
                        for (int h = 0; h < heads; h++) {
                            for (int p = 0; p < r; p++) {
                                for (int d = 0; d < dim; d++) {
                                    residual[kind][b][h][p][d] = res.getAtIndex(F32,
                                            (((long) b * heads + h) * r + p) * dim + d);
                                }
                            }
                        }
                    }
                }
            }
            for (int b = 0; b < batch; b++) {
                KvCache cache = caches.get(b);
                int length = cache.length(l);
                int q = store.quantized(b);
                assertEquals(length - q, store.residualTokens(b), "residual tokens of sequence " + b);
                try (Arena arena = Arena.ofConfined()) {
                    KvView keys = KvView.allocate(arena, heads, length, dim);
                    KvView values = KvView.allocate(arena, heads, length, dim);
                    cache.materialize(l, keys, values);
                    for (int h = 0; h < heads; h++) {
                        for (int p = 0; p < length; p++) {
                            for (int d = 0; d < dim; d++) {
                                float k = p < q ? dense[0][b][h][p][d] : residual[0][b][h][p - q][d];
                                float v = p < q ? dense[1][b][h][p][d] : residual[1][b][h][p - q][d];
                                if (Float.floatToIntBits(k) != Float.floatToIntBits(keys.get(h, p, d))
                                        || Float.floatToIntBits(v) != Float.floatToIntBits(values.get(h, p, d))) {
                                    throw new AssertionError("layer " + l + " sequence " + b + " head " + h + " token "
                                            + p + " (" + q + " quantized) channel " + d + ": device " + k + "/" + v
                                            + ", cache " + keys.get(h, p, d) + "/" + values.get(h, p, d));
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    private static void decodeRun(ArenaMemory memory, StoredRun run, int tokenBlock, long codesAt, long scalesAt,
                                  long zerosAt, int batch, int t, int dim, float[][][][] out) {
        int hr = run.heads();
        int rowBytes = dim * run.bits() / 8;
        MemorySegment codes = memory.at(codesAt, (long) t * batch * hr * rowBytes);
        int g = run.groupSize();
        int pb = run.paramBytes();
        MemorySegment scales = memory.at(scalesAt, (long) t * batch * hr * dim * pb + 1);
        MemorySegment zeros = memory.at(zerosAt, (long) t * batch * hr * dim * pb + 1);
        for (int p = 0; p < t; p++) {
            for (int b = 0; b < batch; b++) {
                for (int h = 0; h < hr; h++) {
                    long rowStart = QuantizedPastLayout.row(p, tokenBlock, batch, b, hr, h) * rowBytes;
                    for (int d = 0; d < dim; d++) {
                        int u = code(codes, rowStart, d, run.bits());
                        long param = run.axis() == StoredRun.GroupAxis.TOKEN
                                ? QuantizedPastLayout.row(p, tokenBlock, batch, b, hr, h) * (dim / g) + d / g
                                : (((long) (p / g) * batch + b) * hr + h) * dim + d;
                        float s = pb == 2 ? Float.float16ToFloat(scales.get(F16, param * 2)) : scales.get(F32, param * 4);
                        float z = pb == 2 ? Float.float16ToFloat(zeros.get(F16, param * 2)) : zeros.get(F32, param * 4);
                        out[b][run.firstHead() + h][p][d] = run.form() == AffineForm.ZERO_POINT
                                ? ((float) (u + run.codeOffset()) + z) * s : u * s + z;
                    }
                }
            }
        }
    }

    /** Code {@code d} of a row: one per byte at 8 bits, else planar chunks of 16 bytes ({@link BitPacking}). */
    private static int code(MemorySegment codes, long rowStart, int d, int bits) {
        if (bits == 8) {
            return codes.get(ValueLayout.JAVA_BYTE, rowStart + d) & 0xFF;
        }
        int perChunk = 128 / bits;
        int chunk = d / perChunk;
        int within = d % perChunk;
        int plane = within / 16;
        int k = within % 16;
        int b = codes.get(ValueLayout.JAVA_BYTE, rowStart + chunk * 16L + k) & 0xFF;
        return (b >>> (plane * bits)) & ((1 << bits) - 1);
    }
}
