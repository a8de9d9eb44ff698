package dev.kvq.bench;

import dev.kvq.cache.KvCache;
import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.ModelShape;
import dev.kvq.config.Placement;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.model.ModelConfig;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.spi.DeviceMemory;
import dev.kvq.generate.spi.PastBuffers;
import dev.kvq.generate.spi.QuantizedDecoder;
import dev.kvq.generate.spi.QuantizedPastLayout;
import dev.kvq.generate.spi.QuantizedStep;
import dev.kvq.generate.spi.Step;
import dev.kvq.generate.spi.StepInput;
import dev.kvq.io.config.ConfigFiles;
import dev.kvq.tensor.KvView;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * What a placement-device decode step costs the host besides the model: the caches quantizing the new tokens and the
 * device store gathering what to upload ({@link DecodeSession}'s "append" time), for the bench shapes' layouts. The
 * model is a stand-in whose forward pass does nothing and whose new K/V are fixed random rows; device memory is host
 * memory whose uploads are dropped (a GPU copies them asynchronously). So the time printed is exactly kvq's host work
 * per step, which on a GPU adds to the forward pass.
 *
 * <pre>java -cp kvq-bench/target/benchmarks.jar dev.kvq.bench.DeviceStepHostTime [batch=56] [context=1024]
 *     [steps=64] [layers=16] [heads=8] [dim=64] [configs=fp16,kv4,mixed,kivi-kv8] [warm=true] [trace=false]
 *     [block=32]</pre>
 * With {@code warm=false} the steps are timed in the JVM's first run (as {@code kvq bench --warmup-steps 0
 * --repeats 0} times them); {@code trace=true} prints every timed step's milliseconds; {@code block} is the token
 * block the stand-in reads the history in (32, as ONNX Runtime's decoder where kvq's operator attends; 1, one token
 * per row).
 */
public final class DeviceStepHostTime {
    private static final String KV4 = perToken(4);
    private static final String KIVI_KV8 = "axis_key: 1\naxis_value: 0\nq_group_size: 32\nresidual_length: 32\n"
            + "asym: true\nnbits_key: 8\nnbits_value: 8\n";

    private DeviceStepHostTime() {
    }

    /** The configuration of per-token K{@code bits}V{@code bits}: groups of a head, no residual, asymmetric. */
    static String perToken(int bits) {
        return "axis_key: 0\naxis_value: 0\nq_group_size: -1\nresidual_length: 0\nasym: true\nnbits_key: " + bits
                + "\nnbits_value: " + bits + "\n";
    }

    public static void main(String[] args) {
        int batch = 56;
        int context = 1024;
        int steps = 64;
        int layers = 16;
        int heads = 8;
        int dim = 64;
        String configs = "fp16,kv4,mixed,kivi-kv8";
        boolean warm = true;
        boolean trace = false;
        int block = 32;
        for (String a : args) {
            String[] kv = a.split("=", 2);
            switch (kv[0]) {
                case "batch" -> batch = Integer.parseInt(kv[1]);
                case "context" -> context = Integer.parseInt(kv[1]);
                case "steps" -> steps = Integer.parseInt(kv[1]);
                case "layers" -> layers = Integer.parseInt(kv[1]);
                case "heads" -> heads = Integer.parseInt(kv[1]);
                case "dim" -> dim = Integer.parseInt(kv[1]);
                case "configs" -> configs = kv[1];
                case "warm" -> warm = Boolean.parseBoolean(kv[1]);
                case "trace" -> trace = Boolean.parseBoolean(kv[1]);
                case "block" -> block = Integer.parseInt(kv[1]);
                default -> throw new IllegalArgumentException("unknown argument " + a);
            }
        }
        ModelShape shape = new ModelShape(layers, heads, dim);
        System.out.printf(Locale.ROOT, "# host time per decode step, placement device: %d layers x %d KV heads x %d, "
                + "batch %d, context %d, %d steps, token block %d, %d cores%n", layers, heads, dim, batch, context,
                steps, block, Runtime.getRuntime().availableProcessors());
        for (String name : configs.split(",")) {
            CacheFactory factory = factory(name, shape);
            if (warm) {
                // the first run warms the JIT up
                measure(factory, shape, batch, context, steps, block, false);
            }
            double ms = measure(factory, shape, batch, context, steps, block, trace);
            System.out.printf(Locale.ROOT, "%-9s append+sync %.3f ms/step, %.2f us per sequence%n", name, ms,
                    ms * 1000 / batch);
        }
    }

    private static CacheFactory factory(String name, ModelShape shape) {
        String mixedLayers = mixedLayers(shape.layers());
        String yaml = switch (name) {
            case "fp16" -> null;
            case "kv4" -> KV4;
            case "kivi-kv8" -> KIVI_KV8;
            case "kivi-k4v2" -> KIVI_KV8.replace("nbits_key: 8", "nbits_key: 4").replace("nbits_value: 8",
                    "nbits_value: 2");
            case "mixed" -> KV4 + "per_layer_quant: true\nper_layer_config:\n" + mixedLayers;
            default -> throw new IllegalArgumentException("unknown configuration " + name
                    + " (fp16, kv4, mixed, kivi-kv8, kivi-k4v2)");
        };
        if (yaml == null) {
            return CacheFactory.fullPrecision(shape, Placement.DEVICE);
        }
        return CacheFactory.quantized(KvCaches.spec(ConfigFiles.parse("placement: device\n" + yaml), shape));
    }

    /** The bench model's mixed file: K4V4 on the first half of the layers, K4V2 on the rest. */
    private static String mixedLayers(int layers) {
        StringBuilder s = new StringBuilder();
        for (int l = 0; l < layers; l++) {
            s.append("  ").append(l).append(": {nbits_key: 4, nbits_value: ").append(l < layers / 2 ? 4 : 2)
                    .append("}\n");
        }
        return s.toString();
    }

    /** Prefills every sequence with {@code context} tokens, then returns the mean host time of one decode step. */
    private static double measure(CacheFactory factory, ModelShape shape, int batch, int context, int steps,
                                  int block, boolean trace) {
        List<KvCache> caches = new ArrayList<>();
        for (int b = 0; b < batch; b++) {
            caches.add(factory.newCache());
        }
        try (StandIn model = new StandIn(shape, Math.min(context, 1024), block);
             DecodeSession session = new DecodeSession(model, caches, Placement.DEVICE)) {
            session.reserve(context + steps);
            for (int done = 0; done < context; ) {
                int n = Math.min(1024, context - done);
                session.feed(rows(batch, n), false);
                done += n;
            }
            long before = session.timings().appendNanos();
            int[][] next = rows(batch, 1);
            for (int s = 0; s < steps; s++) {
                long t = session.timings().appendNanos();
                session.feed(next, false);
                if (trace) {
                    System.out.printf(Locale.ROOT, " %.1f", (session.timings().appendNanos() - t) / 1e6);
                }
            }
            if (trace) {
                System.out.println();
            }
            return (session.timings().appendNanos() - before) / 1e6 / steps;
        } finally {
            caches.forEach(KvCache::close);
        }
    }

    private static int[][] rows(int batch, int tokens) {
        int[][] rows = new int[batch][tokens];
        for (int[] r : rows) {
            java.util.Arrays.fill(r, 1);
        }
        return rows;
    }

    /**
     * A decoder whose step computes nothing: every layer and sequence gets the same fixed random K/V rows, read-only,
     * so sequences may read them concurrently; logits are zero.
     */
    private static final class StandIn implements Decoder, QuantizedDecoder, Step {
        private final ModelConfig config;
        private final Arena arena = Arena.ofShared();
        private final MemorySegment rows;
        private final int heads;
        private final int dim;
        private final DroppedUploads memory = new DroppedUploads();
        private final int block;
        private QuantizedPastLayout layout;
        private int tokens;

        StandIn(ModelShape shape, int maxTokens, int block) {
            this.block = block;
            this.heads = shape.kvHeads();
            this.dim = shape.headDim();
            this.config = new ModelConfig("stand-in", shape.layers(), heads, heads, dim, heads * dim, 2, 0, List.of(),
                    null);
            this.rows = arena.allocate((long) heads * maxTokens * dim * Float.BYTES, 64);
            SplittableRandom random = new SplittableRandom(7);
            for (long i = 0; i < rows.byteSize() / Float.BYTES; i++) {
                rows.setAtIndex(ValueLayout.JAVA_FLOAT, i, (float) random.nextGaussian());
            }
        }

        @Override
        public ModelConfig config() {
            return config;
        }

        @Override
        public String device() {
            return "stand-in";
        }

        @Override
        public PastBuffers past(int batch, int pastLength) {
            throw new UnsupportedOperationException("the stand-in runs placement device only");
        }

        @Override
        public Step forward(StepInput input) {
            throw new UnsupportedOperationException("the stand-in runs placement device only");
        }

        @Override
        public boolean halfKv() {
            return true;
        }

        @Override
        public QuantizedDecoder quantized(QuantizedPastLayout layout) {
            this.layout = layout.withTokenBlock(block);
            return this;
        }

        @Override
        public QuantizedPastLayout layout() {
            return layout;
        }

        @Override
        public DeviceMemory memory() {
            return memory;
        }

        @Override
        public Step forward(QuantizedStep step) {
            tokens = step.tokens();
            return this;
        }

        @Override
        public void logits(int b, int t, float[] out) {
            java.util.Arrays.fill(out, 0f);
        }

        @Override
        public KvView newKeys(int layer, int b) {
            return KvView.contiguous(rows, heads, tokens, dim);
        }

        @Override
        public KvView newValues(int layer, int b) {
            return KvView.contiguous(rows, heads, tokens, dim);
        }

        @Override
        public boolean concurrentViews() {
            return true;
        }

        @Override
        public void close() {
            arena.close();
            memory.arena.close();
        }
    }

    /** Device memory that allocates nothing on a device and drops uploads: only the host's side is timed. */
    private static final class DroppedUploads implements DeviceMemory {
        private final Arena arena = Arena.ofShared();
        private long next = 64;
        private long allocated;

        @Override
        public long allocate(long bytes, Element element) {
            long at = next;
            next += (bytes + 63) & ~63L;
            allocated += bytes;
            return at;
        }

        @Override
        public void free(long address) {
        }

        @Override
        public void upload(MemorySegment src, long srcOffset, long dst, long bytes) {
        }

        @Override
        public void upload2d(MemorySegment src, long srcOffset, long srcPitch, long dst, long dstPitch, long width,
                             long height) {
        }

        @Override
        public void copy(long src, long dst, long bytes) {
        }

        @Override
        public void copy2d(long src, long srcPitch, long dst, long dstPitch, long width, long height) {
        }

        @Override
        public void synchronize() {
        }

        @Override
        public MemorySegment staging(long bytes) {
            return arena.allocate(bytes, 64);
        }

        @Override
        public void freeStaging(MemorySegment staging) {
        }

        @Override
        public long bytesAllocated() {
            return allocated;
        }

        @Override
        public long peakBytesAllocated() {
            return allocated;
        }
    }
}
