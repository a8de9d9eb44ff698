package dev.kvq.bench;

import dev.kvq.cache.KvCache;
import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.CachePolicy;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.ModelShape;
import dev.kvq.config.PrecisionPlan;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.CharTokenizer;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.Generator;
import dev.kvq.generate.Sampler;
import dev.kvq.generate.SamplingParams;
import dev.kvq.generate.UnknownChars;
import dev.kvq.generate.model.ModelConfig;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.spi.PastBuffers;
import dev.kvq.generate.spi.Step;
import dev.kvq.generate.spi.StepInput;
import dev.kvq.tensor.KvView;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Heap bytes allocated per decoded token by the decode loop's Java side, measured with
 * {@code ThreadMXBean.getThreadAllocatedBytes} after a warm-up, so the numbers are exact and need no profiler.
 * A quantized cache's numbers are those of C2-compiled code (the Vector API boxes its vectors until then).
 * The model is a stand-in decoder that allocates nothing per step (constant logits over a vocabulary of
 * {@value #VOCAB}), so what is counted is kvq's own work: the sampler alone, the {@link DecodeSession} step alone,
 * {@link Generator} per token (session included), and a quantized cache's append per token.
 *
 * <pre>java -cp kvq-bench/target/benchmarks.jar dev.kvq.bench.DecodeAllocation</pre>
 */
public final class DecodeAllocation {
    static final int VOCAB = 32_000;
    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();

    private DecodeAllocation() {
    }

    public static void main(String[] args) {
        float[] logits = new SplittableRandom(1).doubles(VOCAB, -8, 8).collect(() -> new FloatList(VOCAB),
                FloatList::add, (a, b) -> { }).values;
        SamplingParams sampled = new SamplingParams(0.8, 0, 0.9, 7);
        SamplingParams topK = new SamplingParams(0.8, 40, 1, 7);
        System.out.printf(Locale.ROOT, "heap bytes allocated per decoded token (vocabulary %,d, after warm-up)%n", VOCAB);
        row("Sampler, greedy", perCall(1000, () -> new Sampler(SamplingParams.greedy(), 0), logits));
        row("Sampler, temperature 0.8 top-p 0.9", perCall(200, () -> new Sampler(sampled, 0), logits));
        row("Sampler, temperature 0.8 top-k 40", perCall(200, () -> new Sampler(topK, 0), logits));
        for (int tokens : new int[] {256, 1024}) {
            row("DecodeSession step alone (" + tokens + " steps)", sessionPerStep(logits, tokens));
            row("Generator greedy, " + tokens + " tokens (session included)", generatorPerToken(logits, tokens,
                    SamplingParams.greedy()));
            row("Generator top-p 0.9, " + tokens + " tokens (session included)", generatorPerToken(logits, tokens,
                    sampled));
        }
        ModelShape shape = new ModelShape(4, 2, 64);
        row("cache append, append policy, per-token 4-bit (R=0)", cachePerToken(shape,
                KvQuantConfig.perToken(4, 4).build()));
        row("cache append, kvtuner policy, KIVI 4-bit (R=32)", cachePerToken(shape,
                KvQuantConfig.kivi(4, 4).policy(CachePolicy.KVTUNER).build()));
    }

    private static void row(String name, double bytes) {
        System.out.printf(Locale.ROOT, "  %-60s %,12.0f%n", name, bytes);
    }

    private static double perCall(int calls, java.util.function.Supplier<Sampler> samplers, float[] logits) {
        Sampler s = samplers.get();
        int sink = 0;
        for (int i = 0; i < 3 * calls; i++) {
            sink += s.next(logits);
        }
        long before = allocated();
        for (int i = 0; i < calls; i++) {
            sink += s.next(logits);
        }
        long bytes = allocated() - before;
        consume(sink);
        return bytes / (double) calls;
    }

    private static double sessionPerStep(float[] logits, int steps) {
        StandIn decoder = new StandIn(logits, steps + 8);
        measureSession(decoder, steps);
        return measureSession(decoder, steps);
    }

    private static double measureSession(StandIn decoder, int steps) {
        try (DecodeSession s = new DecodeSession(decoder, List.of(new CountingCache(decoder.config().shape())))) {
            s.feed(new int[][] {{1, 2, 3}}, false);
            int[][] next = {{5}};
            long before = allocated();
            for (int i = 0; i < steps; i++) {
                s.feed(next, false);
            }
            return (allocated() - before) / (double) steps;
        }
    }

    private static double generatorPerToken(float[] logits, int tokens, SamplingParams sampling) {
        StandIn decoder = new StandIn(logits, tokens + 8);
        List<String> chars = new ArrayList<>(VOCAB);
        for (int i = 0; i < VOCAB; i++) {
            chars.add(new String(Character.toChars(0x4E00 + i)));
        }
        CharTokenizer tokenizer = new CharTokenizer(chars, UnknownChars.ERROR);
        ModelShape shape = decoder.config().shape();
        CacheFactory caches = new CacheFactory() {
            @Override
            public KvCache newCache() {
                return new CountingCache(shape);
            }

            @Override
            public PrecisionPlan plan() {
                return null;
            }

            @Override
            public String describe() {
                return "counting";
            }
        };
        Generator g = new Generator(decoder, tokenizer, caches);
        Generator.Options options = new Generator.Options(tokens, sampling, List.of());
        long[] chars2 = new long[1];
        Generator.Listener listener = (b, token, delta) -> chars2[0] += delta.length();
        String prompt = chars.get(1) + chars.get(2) + chars.get(3);
        for (int i = 0; i < 5; i++) {
            g.generate(List.of(prompt), options, listener);
        }
        long before = allocated();
        Generator.Output out = g.generate(List.of(prompt), options, listener);
        long bytes = allocated() - before;
        consume(out.results().getFirst().tokens().length + (int) chars2[0]);
        return bytes / (double) tokens;
    }

    private static double cachePerToken(ModelShape shape, KvQuantConfig config) {
        var spec = KvCaches.spec(config, shape);
        try (Arena arena = Arena.ofConfined()) {
            KvView token = KvView.allocate(arena, shape.kvHeads(), 1, shape.headDim());
            for (int d = 0; d < shape.headDim(); d++) {
                for (int h = 0; h < shape.kvHeads(); h++) {
                    token.set(h, 0, d, (float) Math.sin(d * 0.37 + h));
                }
            }
            int steps = 512;
            // the Vector API allocates its vectors until C2 compiles the kernels: warm up well past that
            for (int i = 0; i < 15; i++) {
                try (KvCache cache = spec.newCache()) {
                    appendTokens(cache, shape, token, steps);
                }
            }
            try (KvCache cache = spec.newCache()) {
                long before = allocated();
                appendTokens(cache, shape, token, steps);
                return (allocated() - before) / (double) steps;
            }
        }
    }

    private static void appendTokens(KvCache cache, ModelShape shape, KvView token, int steps) {
        for (int i = 0; i < steps; i++) {
            for (int l = 0; l < shape.layers(); l++) {
                cache.append(l, token, token);
            }
        }
    }

    private static long allocated() {
        return THREADS.getThreadAllocatedBytes(Thread.currentThread().threadId());
    }

    private static volatile int blackhole;

    private static void consume(int v) {
        blackhole += v;
    }

    /** A growable float array for the seeded logits. */
    private static final class FloatList {
        final float[] values;
        int n;

        FloatList(int capacity) {
            values = new float[capacity];
        }

        void add(double v) {
            values[n++] = (float) v;
        }
    }

    /** A decoder with one layer that returns the same logits every step and allocates nothing per step itself. */
    private static final class StandIn implements Decoder, Step {
        private static final int HEADS = 1;
        private static final int DIM = 8;
        private final ModelConfig config;
        private final float[] logits;
        private final MemorySegment pastKeys;
        private final MemorySegment pastValues;
        private final MemorySegment fresh;
        private final MutablePast past = new MutablePast();
        private int tokens;

        StandIn(float[] logits, int maxTokens) {
            this.config = new ModelConfig("stand-in", 1, HEADS, HEADS, DIM, HEADS * DIM, logits.length, 0, List.of(),
                    null);
            this.logits = logits;
            Arena arena = Arena.ofAuto();
            pastKeys = arena.allocate((long) maxTokens * HEADS * DIM * Float.BYTES);
            pastValues = arena.allocate((long) maxTokens * HEADS * DIM * Float.BYTES);
            fresh = arena.allocate((long) maxTokens * HEADS * DIM * Float.BYTES);
        }

        @Override
        public ModelConfig config() {
            return config;
        }

        @Override
        public String device() {
            return "cpu";
        }

        @Override
        public PastBuffers past(int batch, int pastLength) {
            past.length = pastLength;
            return past;
        }

        @Override
        public Step forward(StepInput input) {
            tokens = input.tokens();
            return this;
        }

        @Override
        public void logits(int b, int t, float[] out) {
            System.arraycopy(logits, 0, out, 0, logits.length);
        }

        @Override
        public KvView newKeys(int layer, int b) {
            return KvView.sequence(fresh, b, HEADS, tokens, DIM);
        }

        @Override
        public KvView newValues(int layer, int b) {
            return KvView.sequence(fresh, b, HEADS, tokens, DIM);
        }

        @Override
        public void close() {
        }

        private final class MutablePast implements PastBuffers {
            int length;

            @Override
            public int batch() {
                return 1;
            }

            @Override
            public int length() {
                return length;
            }

            @Override
            public KvView keys(int layer, int sequence) {
                return KvView.sequence(pastKeys, sequence, HEADS, length, DIM);
            }

            @Override
            public KvView values(int layer, int sequence) {
                return KvView.sequence(pastValues, sequence, HEADS, length, DIM);
            }
        }
    }

    /** A cache that only counts tokens: the decode loop's bookkeeping without any cache work. */
    private static final class CountingCache implements KvCache {
        private final PrecisionPlan plan;
        private final int[] lengths;

        CountingCache(ModelShape shape) {
            this.plan = null;
            this.lengths = new int[shape.layers()];
        }

        @Override
        public PrecisionPlan plan() {
            return plan;
        }

        @Override
        public int length(int layer) {
            return lengths[layer];
        }

        @Override
        public void append(int layer, KvView keys, KvView values) {
            lengths[layer] += keys.tokens();
        }

        @Override
        public void materialize(int layer, KvView keys, KvView values) {
        }

        @Override
        public KvPair update(int layer, KvView keys, KvView values) {
            throw new UnsupportedOperationException();
        }

        @Override
        public long bytesHeld() {
            return 0;
        }

        @Override
        public long bytesFp16() {
            return 0;
        }

        @Override
        public void close() {
        }
    }
}
