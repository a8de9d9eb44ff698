package dev.kvq.bench;

import dev.kvq.backend.hqq.HqqProvider;
import dev.kvq.backend.quanto.QuantoProvider;
import dev.kvq.backend.vanilla.VanillaProvider;
import dev.kvq.spi.PackedBlock;
import dev.kvq.spi.QuantSpec;
import dev.kvq.spi.Quantizer;
import dev.kvq.spi.QuantizerProvider;
import dev.kvq.tensor.KvView;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * Quantize and dequantize one sequence's K (8 KV heads x 512 tokens x head_dim 128 float32, 2 MiB, Gaussian with two
 * outlier channels), and a plain copy of the same bytes as the yardstick. {@link BenchMain} turns the times into GB/s
 * of float32 input and fractions of copy bandwidth.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector"})
public class QuantizerBenchmark {
    public static final int HEADS = 8;
    public static final int TOKENS = 512;
    public static final int DIM = 128;

    /** backend:variant, e.g. vanilla, hqq (optimizer on), hqq-noopt, quanto. */
    @Param({"vanilla"})
    public String backend;

    @Param({"2", "4", "8"})
    public int bits;

    /** per-token or per-channel, translated into each backend's axis. */
    @Param({"token", "channel"})
    public String grouping;

    private Arena arena;
    private KvView input;
    private KvView output;
    private MemorySegment copyTarget;
    private Quantizer quantizer;
    private PackedBlock block;

    @Setup(Level.Trial)
    public void setUp() {
        arena = Arena.ofShared();
        input = KvView.allocate(arena, HEADS, TOKENS, DIM);
        output = KvView.allocate(arena, HEADS, TOKENS, DIM);
        copyTarget = arena.allocate(input.elements() * Float.BYTES, 64);
        SplittableRandom rnd = new SplittableRandom(42);
        for (int h = 0; h < HEADS; h++) {
            for (int t = 0; t < TOKENS; t++) {
                for (int d = 0; d < DIM; d++) {
                    double x = rnd.nextGaussian();
                    input.set(h, t, d, (float) (d == 7 || d == 70 ? 12 * x : x));
                }
            }
        }
        boolean channel = grouping.equals("channel");
        String name = backend.replace("-noopt", "");
        QuantizerProvider provider = switch (name) {
            case "vanilla" -> new VanillaProvider();
            case "hqq" -> new HqqProvider();
            case "quanto" -> new QuantoProvider();
            default -> throw new IllegalArgumentException(backend);
        };
        int axis = switch (name) {
            case "hqq" -> channel ? 0 : 1;
            case "quanto" -> channel ? -1 : 0;
            default -> channel ? 1 : 0;
        };
        int gs = channel ? 32 : (name.equals("vanilla") ? -1 : DIM);
        Map<String, String> options = name.equals("hqq") ? Map.of("optimize", String.valueOf(!backend.endsWith("-noopt")))
                : Map.of();
        quantizer = provider.create(new QuantSpec(bits, axis, gs, true, options));
        block = quantizer.quantize(input, arena);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        arena.close();
    }

    @Benchmark
    public PackedBlock quantize() {
        try (Arena a = Arena.ofConfined()) {
            PackedBlock b = quantizer.quantize(input, a);
            return b.groups() > 0 ? null : b;
        }
    }

    @Benchmark
    public KvView dequantize() {
        block.dequantize(output);
        return output;
    }

    @Benchmark
    public MemorySegment copy() {
        MemorySegment.copy(input.segment(), 0, copyTarget, 0, copyTarget.byteSize());
        return copyTarget;
    }
}
