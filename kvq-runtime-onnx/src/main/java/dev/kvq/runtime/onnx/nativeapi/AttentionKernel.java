package dev.kvq.runtime.onnx.nativeapi;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.spi.StoredRun;
import dev.kvq.spi.AffineForm;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * kvq's attention kernels ({@code src/main/cuda/attention.cu}, shipped as PTX) on one device: {@code
 * kvq_attention_*} attends over a split of the tokens for every (sequence, KV head, query token) and {@code
 * kvq_attention_combine_*} joins the splits. Arguments travel by value in one struct ({@link #PARAMS_BYTES} bytes,
 * laid out here as the kernel declares it). Launches go on the stream ONNX Runtime runs the operator on.
 */
@SuppressWarnings("restricted") // native calls are what this class is for
final class AttentionKernel {
    static final String PTX_RESOURCE = "attention.ptx";
    /** Size of {@code struct KvqAttention}, the kernels' one parameter. */
    static final int PARAMS_BYTES = 256;
    private static final int RUN_BYTES = 64;
    private static final int THREADS = 128;
    private static final int TILE_FLOATS = 8192;
    /** Blocks to aim for: a few per SM of a large GPU, so that small batches still fill it. */
    private static final int TARGET_BLOCKS = 528;
    /**
     * Tokens a block takes at most: with fewer, larger blocks a launch ended in a partial wave of long blocks (768
     * blocks of 1,408 tokens at 32 x 4k, where about 600 fit at once on an H200).
     */
    static final int MOST_TOKENS_PER_SPLIT = 512;
    /**
     * The (key bits, value bits) that have entry points of their own for rows of one group ({@code
     * kvq_attention_mma64_k4v4_f16}): KVTuner's candidate pairs.
     */
    static final int[][] ROW_PAIRS = {{8, 8}, {8, 4}, {4, 4}, {4, 2}, {2, 2}};
    private static final Map<Integer, AttentionKernel> BY_DEVICE = new ConcurrentHashMap<>();

    private final CudaModule module;
    private final CudaDriver driver;
    private final MemorySegment attendHalf;
    private final MemorySegment attendFloat;
    private final MemorySegment combineHalf;
    private final MemorySegment combineFloat;
    /** The warps variant for at most 4 and at most 8 query heads per KV head. */
    private final MemorySegment warps4Half;
    private final MemorySegment warps4Float;
    private final MemorySegment warps8Half;
    private final MemorySegment warps8Float;
    /** The tensor-core variant for float16 models, by head size (64, 128) and how the keys are held ({@link Keys}). */
    private final MemorySegment[] mma64 = new MemorySegment[Keys.values().length];
    private final MemorySegment[] mma128 = new MemorySegment[Keys.values().length];
    /** The tensor-core variant for rows of one group along tokens, by head size (64, 128) and {@link #ROW_PAIRS}. */
    private final MemorySegment[] rows64 = new MemorySegment[ROW_PAIRS.length];
    private final MemorySegment[] rows128 = new MemorySegment[ROW_PAIRS.length];
    /** The variant launches take unless told otherwise. */
    private final Variant variant;
    /** Per thread: the parameter struct and the {@code void*} pointing at it. */
    private final ThreadLocal<MemorySegment[]> arguments = ThreadLocal.withInitial(() -> {
        Arena arena = Arena.ofAuto();
        MemorySegment params = arena.allocate(PARAMS_BYTES, 8);
        MemorySegment pointer = arena.allocate(ADDRESS);
        pointer.set(ADDRESS, 0, params);
        return new MemorySegment[] {params, pointer};
    });

    private AttentionKernel(int ordinal) {
        this.variant = Variant.configured();
        this.module = new CudaModule(ordinal, PTX_RESOURCE);
        this.driver = module.driver();
        attendHalf = module.function("kvq_attention_f16");
        attendFloat = module.function("kvq_attention_f32");
        combineHalf = module.function("kvq_attention_combine_f16");
        combineFloat = module.function("kvq_attention_combine_f32");
        warps4Half = module.function("kvq_attention_warps4_f16");
        warps4Float = module.function("kvq_attention_warps4_f32");
        warps8Half = module.function("kvq_attention_warps8_f16");
        warps8Float = module.function("kvq_attention_warps8_f32");
        for (Keys keys : Keys.values()) {
            String suffix = "_" + keys.name().toLowerCase(Locale.ROOT) + "_f16";
            mma64[keys.ordinal()] = module.function("kvq_attention_mma64" + suffix);
            mma128[keys.ordinal()] = module.function("kvq_attention_mma128" + suffix);
        }
        for (int i = 0; i < ROW_PAIRS.length; i++) {
            String suffix = "_k" + ROW_PAIRS[i][0] + "v" + ROW_PAIRS[i][1] + "_f16";
            rows64[i] = module.function("kvq_attention_mma64" + suffix);
            rows128[i] = module.function("kvq_attention_mma128" + suffix);
        }
    }

    /**
     * How a block works through its tokens: {@code BLOCK}, all threads on one tile at a time with the block
     * synchronized between its phases ({@code kvq_attention_*}); {@code WARPS}, each warp on tokens of its own with its
     * own softmax, the warps joined at the end ({@code kvq_attention_warps4_*} or {@code warps8_*}, by the query
     * heads per KV head); {@code MMA}, the warps' products on the tensor cores ({@code kvq_attention_mma*}) where
     * {@link #mmaKeys} admits the stretch, else as {@code WARPS}, through an entry point compiled for the stretch's
     * bit widths where {@link #rowPair} finds one; {@code MMA_GENERAL}, as {@code MMA} without those (what they are
     * measured against). Same grid, parameters and results.
     */
    enum Variant {
        BLOCK, WARPS, MMA, MMA_GENERAL;

        /**
         * The variant {@code -Dkvq.cuda.attention=block|warps|mma|mma-general} names; default mma, which took 0.48x
         * warps' time per layer for float16 and 0.57x for KV4 at 32 x 4k on an H200
         * (docs/results/gpu/fused/kernel-occupancy).
         */
        static Variant configured() {
            String v = System.getProperty("kvq.cuda.attention", "mma");
            return switch (v) {
                case "block" -> BLOCK;
                case "warps" -> WARPS;
                case "mma" -> MMA;
                case "mma-general" -> MMA_GENERAL;
                default -> throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "-Dkvq.cuda.attention=" + v
                        + " is not a kernel variant; give block, warps, mma or mma-general");
            };
        }
    }

    /**
     * How the tensor-core kernel takes a stretch's keys: float16 values, codes grouped along channels or tokens (the
     * entry points' names end in the lower-case name: {@code kvq_attention_mma64_token_f16}).
     */
    enum Keys {
        RAW, TOKEN, CHANNEL
    }

    /**
     * How the tensor-core kernel reads a stretch, or null where it cannot: it takes float16 models with head sizes
     * 64 and 128 and at most 8 query heads per KV head, raw runs of float16, and codes of 2, 4 and 8 bits, keys grouped
     * along tokens only in groups of a multiple of 16 tokens (a warp's tile of 16 shares one group's scales).
     */
    static Keys mmaKeys(AttentionSpec spec, AttentionSpec.Stretch stretch) {
        if (!spec.half() || spec.headDim() != 64 && spec.headDim() != 128 || spec.group() > 8) {
            return null;
        }
        StoredRun key = spec.keys().get(stretch.keyRun());
        StoredRun value = spec.values().get(stretch.valueRun());
        if (key.raw() && key.bits() != 16 || value.raw() && value.bits() != 16) {
            return null;
        }
        if (key.raw()) {
            return Keys.RAW;
        }
        if (key.axis() == StoredRun.GroupAxis.TOKEN) {
            return Keys.TOKEN;
        }
        return key.groupSize() % 16 == 0 ? Keys.CHANNEL : null;
    }

    /**
     * The index in {@link #ROW_PAIRS} of a stretch the tensor-core kernel takes as {@link Keys#TOKEN} whose key and
     * value rows are each one group of channels along tokens with float16 parameters (per-token caches with {@code
     * q_group_size: -1}), or -1: its entry point knows the rows' layout when compiled and decodes a tile with
     * nothing left to look up.
     */
    static int rowPair(AttentionSpec spec, AttentionSpec.Stretch stretch) {
        return mmaKeys(spec, stretch) == Keys.TOKEN ? pairOf(spec, stretch) : -1;
    }

    /** {@link #rowPair} of a stretch {@link #mmaKeys} already takes as {@link Keys#TOKEN}. */
    private static int pairOf(AttentionSpec spec, AttentionSpec.Stretch stretch) {
        StoredRun key = spec.keys().get(stretch.keyRun());
        StoredRun value = spec.values().get(stretch.valueRun());
        if (!oneGroupPerRow(key, spec.headDim()) || !oneGroupPerRow(value, spec.headDim())) {
            return -1;
        }
        for (int i = 0; i < ROW_PAIRS.length; i++) {
            if (ROW_PAIRS[i][0] == key.bits() && ROW_PAIRS[i][1] == value.bits()) {
                return i;
            }
        }
        return -1;
    }

    private static boolean oneGroupPerRow(StoredRun run, int headDim) {
        return !run.raw() && run.axis() == StoredRun.GroupAxis.TOKEN && run.groupSize() == headDim
                && run.halfParams();
    }

    /**
     * The kernels a layer of {@code spec} launches: one attending entry point per stretch, and the combine. They
     * depend on the spec and the variant only, so an operator resolves them once, not on every step.
     */
    record Functions(MemorySegment[] attend, MemorySegment combine) {
    }

    /** {@link Functions} of {@code spec} under the configured variant ({@code -Dkvq.cuda.attention}). */
    Functions functions(AttentionSpec spec) {
        return functions(spec, variant);
    }

    /** {@link Functions} of {@code spec} under {@code variant}. */
    Functions functions(AttentionSpec spec, Variant variant) {
        MemorySegment warps = spec.group() <= 4 ? (spec.half() ? warps4Half : warps4Float)
                : spec.half() ? warps8Half : warps8Float;
        MemorySegment other = variant == Variant.BLOCK ? (spec.half() ? attendHalf : attendFloat) : warps;
        MemorySegment[] attend = new MemorySegment[spec.stretches().size()];
        for (int i = 0; i < attend.length; i++) {
            MemorySegment tensorCores = tensorCoreKernel(spec, spec.stretches().get(i), variant);
            attend[i] = tensorCores != null ? tensorCores : other;
        }
        return new Functions(attend, spec.half() ? combineHalf : combineFloat);
    }

    /** The tensor-core entry point a stretch launches under {@code variant}, or null where it takes another variant. */
    private MemorySegment tensorCoreKernel(AttentionSpec spec, AttentionSpec.Stretch stretch, Variant variant) {
        if (variant != Variant.MMA && variant != Variant.MMA_GENERAL) {
            return null;
        }
        Keys keys = mmaKeys(spec, stretch);
        if (keys == null) {
            return null;
        }
        boolean narrow = spec.headDim() == 64;
        int pair = variant == Variant.MMA && keys == Keys.TOKEN ? pairOf(spec, stretch) : -1;
        return pair >= 0 ? (narrow ? rows64 : rows128)[pair] : (narrow ? mma64 : mma128)[keys.ordinal()];
    }

    /** The kernels on CUDA device {@code ordinal}, loaded once. */
    static AttentionKernel forDevice(int ordinal) {
        return BY_DEVICE.computeIfAbsent(ordinal, AttentionKernel::new);
    }

    /**
     * How one launch splits its work: {@code splits} blocks per row of {@code rows}, each over {@code tokensPerSplit}
     * tokens, and the float32 scratch their partial results take (at least one element, so the output always
     * exists).
     */
    record Split(long rows, int splits, int tokensPerSplit, long scratchFloats) {
    }

    /** One call's work: the inputs' sizes and a split per stretch of the spec's heads, in order. */
    record Plan(AttentionCpu.Shape shape, List<Split> perStretch) {
        /** Scratch enough for every launch (they run one after the other on one stream). */
        long scratchFloats() {
            long most = 1;
            for (Split s : perStretch) {
                most = Math.max(most, s.scratchFloats());
            }
            return most;
        }

        int mostSplits() {
            int most = 1;
            for (Split s : perStretch) {
                most = Math.max(most, s.splits());
            }
            return most;
        }
    }

    /** The work for inputs of shapes {@code dims} (the operator's input order). */
    static Plan plan(AttentionSpec spec, long[][] dims) {
        AttentionCpu.Shape shape = AttentionCpu.Shape.of(spec, dims);
        if ((long) shape.quantized() * shape.batch() * spec.kvHeads() > Integer.MAX_VALUE) {
            // the entry points for rows of one group index a run's rows in 32 bits
            throw new KvqException(ErrorCode.UNSUPPORTED, "a layer of " + shape.batch() + " sequences x "
                    + shape.quantized() + " quantized tokens x " + spec.kvHeads() + " KV heads has more rows than "
                    + "kvq's CUDA attention indexes (2^31 - 1); run fewer sequences at a time");
        }
        List<Split> splits = new ArrayList<>(spec.stretches().size());
        for (AttentionSpec.Stretch stretch : spec.stretches()) {
            splits.add(split(spec, shape, (long) shape.batch() * stretch.heads() * shape.newTokens()));
        }
        return new Plan(shape, splits);
    }

    static Split split(AttentionSpec spec, AttentionCpu.Shape shape, long rows) {
        int tile = tile(spec);
        int tiles = Math.max(1, (shape.total() + tile - 1) / tile);
        int splits = (int) Math.clamp((TARGET_BLOCKS + rows - 1) / rows, 1, tiles);
        splits = Math.max(splits, (shape.total() + MOST_TOKENS_PER_SPLIT - 1) / MOST_TOKENS_PER_SPLIT);
        return split(spec, shape, rows, splits);
    }

    /** {@code rows} rows cut into at most {@code splits} blocks each, of whole tiles (a bench sweeps this). */
    static Split split(AttentionSpec spec, AttentionCpu.Shape shape, long rows, int splits) {
        int tile = tile(spec);
        int total = shape.total();
        int tokensPerSplit = ((total + splits - 1) / splits + tile - 1) / tile * tile;
        tokensPerSplit = Math.max(tokensPerSplit, tile);
        int used = Math.max(1, (total + tokensPerSplit - 1) / tokensPerSplit);
        long scratch = used == 1 ? 1 : rows * used * spec.group() * (spec.headDim() + 2L);
        return new Split(rows, used, tokensPerSplit, scratch);
    }

    private static int tile(AttentionSpec spec) {
        return Math.min(THREADS, TILE_FLOATS / spec.headDim());
    }

    /**
     * {@link #launch(AttentionSpec, Functions, Plan, MemorySegment[], MemorySegment, MemorySegment, MemorySegment)}
     * with the kernels of {@code variant}: tests and benches, which compare variants.
     */
    void launch(AttentionSpec spec, Plan plan, MemorySegment[] inputs, MemorySegment out, MemorySegment scratch,
                MemorySegment stream, Variant variant) {
        launch(spec, functions(spec, variant), plan, inputs, out, scratch, stream);
    }

    /**
     * Queues the layer's attention on {@code stream}: one launch of {@code functions}' entry point (and a combine)
     * per stretch of equal runs.
     */
    void launch(AttentionSpec spec, Functions functions, Plan plan, MemorySegment[] inputs, MemorySegment out,
                MemorySegment scratch, MemorySegment stream) {
        MemorySegment[] args = arguments.get();
        MemorySegment p = args[0];
        AttentionCpu.Shape s = plan.shape();
        try {
            module.makeCurrent();
            // a local, not a call in the call: invokeExact takes an argument's static type
            MemorySegment combine = functions.combine();
            for (int i = 0; i < plan.perStretch().size(); i++) {
                AttentionSpec.Stretch stretch = spec.stretches().get(i);
                Split own = plan.perStretch().get(i);
                long rows = own.rows();
                MemorySegment attend = functions.attend()[i];
                p.fill((byte) 0);
                writeRun(p, 0, spec.keys().get(stretch.keyRun()), spec.tokenBlock(), inputs,
                        spec.keyInput(stretch.keyRun()));
                writeRun(p, RUN_BYTES, spec.values().get(stretch.valueRun()), spec.tokenBlock(), inputs,
                        spec.valueInput(stretch.valueRun()));
                int residual = spec.residualInput();
                p.set(ADDRESS, 128, inputs[0]);
                p.set(ADDRESS, 136, inputs[1]);
                p.set(ADDRESS, 144, inputs[2]);
                p.set(ADDRESS, 152, residual < 0 ? MemorySegment.NULL : inputs[residual]);
                p.set(ADDRESS, 160, residual < 0 ? MemorySegment.NULL : inputs[residual + 1]);
                p.set(ADDRESS, 168, inputs[3]);
                p.set(ADDRESS, 176, out);
                p.set(ADDRESS, 184, scratch);
                p.set(JAVA_LONG, 192, s.biasBatchStride());
                p.set(JAVA_LONG, 200, s.biasHeadStride());
                p.set(JAVA_INT, 208, s.batch());
                p.set(JAVA_INT, 212, spec.kvHeads());
                p.set(JAVA_INT, 216, stretch.firstHead());
                p.set(JAVA_INT, 220, stretch.heads());
                p.set(JAVA_INT, 224, spec.group());
                p.set(JAVA_INT, 228, s.newTokens());
                p.set(JAVA_INT, 232, s.quantized());
                p.set(JAVA_INT, 236, s.residual());
                p.set(JAVA_INT, 240, spec.headDim());
                p.set(JAVA_INT, 244, own.splits());
                p.set(JAVA_INT, 248, own.tokensPerSplit());
                p.set(JAVA_FLOAT, 252, spec.scale());
                if (rows > Integer.MAX_VALUE) {
                    throw new KvqException(ErrorCode.RUNTIME_FAILURE, "too many rows for one launch: " + rows);
                }
                driver.check("cuLaunchKernel(kvq_attention)", (int) driver.launchKernel.invokeExact(
                        attend, (int) rows, own.splits(), 1, THREADS, 1, 1, 0, stream,
                        args[1], MemorySegment.NULL));
                if (own.splits() > 1) {
                    driver.check("cuLaunchKernel(kvq_attention_combine)", (int) driver.launchKernel.invokeExact(
                            combine, (int) rows, 1, 1,
                            Math.min(1024, spec.group() * spec.headDim()), 1, 1, 0, stream, args[1],
                            MemorySegment.NULL));
                }
            }
        } catch (Throwable t) {
            throw OrtApi.unexpected("kvq attention launch", t);
        }
    }

    /** {@code struct KvqRun} at {@code offset}. */
    private static void writeRun(MemorySegment p, long offset, StoredRun run, int tokenBlock, MemorySegment[] inputs,
                                 int first) {
        p.set(ADDRESS, offset, inputs[first]);
        p.set(ADDRESS, offset + 8, run.raw() ? MemorySegment.NULL : inputs[first + 1]);
        p.set(ADDRESS, offset + 16, run.raw() ? MemorySegment.NULL : inputs[first + 2]);
        p.set(JAVA_INT, offset + 24, run.firstHead());
        p.set(JAVA_INT, offset + 28, run.heads());
        p.set(JAVA_INT, offset + 32, run.bits());
        p.set(JAVA_INT, offset + 36, run.axis() == StoredRun.GroupAxis.CHANNEL ? 1 : 0);
        p.set(JAVA_INT, offset + 40, run.groupSize());
        p.set(JAVA_INT, offset + 44, run.form() == AffineForm.SCALE_MIN ? 1 : 0);
        p.set(JAVA_INT, offset + 48, run.codeOffset());
        p.set(JAVA_INT, offset + 52, run.halfParams() ? 1 : 0);
        p.set(JAVA_INT, offset + 56, Integer.numberOfTrailingZeros(tokenBlock));
    }
}
