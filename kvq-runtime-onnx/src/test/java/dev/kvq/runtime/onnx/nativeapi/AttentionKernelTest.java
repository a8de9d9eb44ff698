package dev.kvq.runtime.onnx.nativeapi;

import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.generate.spi.StoredRun;
import dev.kvq.generate.spi.StoredRun.GroupAxis;
import dev.kvq.spi.AffineForm;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * kvq's CUDA attention kernel computes what {@link AttentionCpu} computes, on random histories: float16 and float32
 * models, head sizes 64 and 128, 2 to 8 query heads per KV head, 2-, 4- and 8-bit and raw runs, both group axes,
 * heads of one layer in runs of different bits, residual windows, several new tokens, masked positions, rows one
 * token at a time and in token blocks, and both a single block per row and work split over the tokens; every case
 * through every kernel variant (the tensor-core one takes the float16 cases and leaves the others to warps). Needs a
 * GPU: runs only with {@code -Dkvq.cuda=true}.
 */
@EnabledIfSystemProperty(named = "kvq.cuda", matches = "true")
class AttentionKernelTest {
    record Case(String name, boolean half, int headDim, int kvHeads, int group, int batch, int tokens,
                        int quantized, int residual, List<StoredRun> keys, List<StoredRun> values, int tokenBlock) {
        Case(String name, boolean half, int headDim, int kvHeads, int group, int batch, int tokens, int quantized,
             int residual, List<StoredRun> keys, List<StoredRun> values) {
            this(name, half, headDim, kvHeads, group, batch, tokens, quantized, residual, keys, values, 1);
        }
    }

    static List<Case> cases() {
        List<Case> cases = new ArrayList<>();
        StoredRun k4 = new StoredRun(0, 8, 4, GroupAxis.TOKEN, 32, AffineForm.ZERO_POINT, -8, true);
        StoredRun v4 = new StoredRun(0, 8, 4, GroupAxis.TOKEN, 32, AffineForm.SCALE_MIN, 0, true);
        cases.add(new Case("KV4 decode, batch 8, 4k, split", true, 64, 8, 4, 8, 1, 4096, 0, List.of(k4),
                List.of(v4)));
        cases.add(new Case("KV4 decode, batch 1, 3k, split", false, 64, 8, 4, 1, 1, 3000, 0, List.of(k4),
                List.of(v4)));
        cases.add(new Case("KV4 prefill chunk of 70 over 500", true, 64, 8, 4, 2, 70, 500, 0, List.of(k4),
                List.of(v4)));
        StoredRun kc = new StoredRun(0, 4, 4, GroupAxis.CHANNEL, 32, AffineForm.SCALE_MIN, 0, true);
        StoredRun v2 = new StoredRun(0, 4, 2, GroupAxis.TOKEN, 32, AffineForm.SCALE_MIN, 0, false);
        cases.add(new Case("KIVI K4V2, residual 32, head 128, group 2", true, 128, 4, 2, 3, 2, 256, 32, List.of(kc),
                List.of(v2)));
        StoredRun k8 = new StoredRun(0, 2, 8, GroupAxis.TOKEN, 64, AffineForm.ZERO_POINT, -128, false);
        StoredRun k2 = new StoredRun(2, 2, 2, GroupAxis.TOKEN, 16, AffineForm.ZERO_POINT, -2, true);
        StoredRun v16a = StoredRun.raw(3, true, 64);
        StoredRun v8b = new StoredRun(3, 1, 8, GroupAxis.TOKEN, 64, AffineForm.ZERO_POINT, -128, true);
        cases.add(new Case("per-head runs, raw values, group 8", false, 64, 4, 8, 2, 3, 640, 16, List.of(k8, k2),
                List.of(v16a, v8b)));
        cases.add(new Case("full precision float16, split", true, 128, 8, 4, 4, 1, 2048, 0,
                List.of(StoredRun.raw(8, true, 128)), List.of(StoredRun.raw(8, true, 128))));
        cases.add(new Case("empty history", true, 64, 8, 4, 2, 4, 0, 0, List.of(k4), List.of(v4)));
        cases.add(new Case("KV4 decode, batch 8, 4k, token blocks of 32", true, 64, 8, 4, 8, 1, 4096, 0, List.of(k4),
                List.of(v4), 32));
        cases.add(new Case("KIVI K4V2, residual 32, head 128, token blocks of 32", true, 128, 4, 2, 3, 2, 256, 32,
                List.of(kc), List.of(v2), 32));
        cases.add(new Case("per-head runs, raw values, token blocks of 16", false, 64, 4, 8, 2, 3, 640, 16,
                List.of(k8, k2), List.of(v16a, v8b), 16));
        // the tensor-core kernel's three ways of holding keys, each bit width, float32 and float16 parameters,
        // channel groups of 16, several runs per layer, and float16 raw runs on either side
        cases.add(new Case("per-head runs in a float16 model, group 8, token blocks of 16", true, 64, 4, 8, 2, 3, 640,
                16, List.of(k8, k2), List.of(v16a, v8b), 16));
        StoredRun kc8 = new StoredRun(0, 2, 8, GroupAxis.CHANNEL, 32, AffineForm.ZERO_POINT, -128, true);
        StoredRun v8 = new StoredRun(0, 2, 8, GroupAxis.TOKEN, 64, AffineForm.SCALE_MIN, 0, true);
        cases.add(new Case("KIVI KV8, residual 32, head 64, group 8", true, 64, 2, 8, 2, 1, 1024, 32, List.of(kc8),
                List.of(v8)));
        // token blocks of 32 under 8-bit keys grouped either way, and 4-bit values in groups of 16 at head 128
        cases.add(new Case("KIVI KV8, residual 32, head 64, group 8, token blocks of 32", true, 64, 2, 8, 2, 1, 1024,
                32, List.of(kc8), List.of(v8), 32));
        StoredRun k8h = new StoredRun(0, 4, 8, GroupAxis.TOKEN, 32, AffineForm.SCALE_MIN, 0, true);
        StoredRun v4g16 = new StoredRun(0, 4, 4, GroupAxis.TOKEN, 16, AffineForm.ZERO_POINT, -8, false);
        cases.add(new Case("K8V4, values in groups of 16, head 128, token blocks of 32", true, 128, 4, 4, 2, 1, 992,
                0, List.of(k8h), List.of(v4g16), 32));
        StoredRun v2c = new StoredRun(0, 4, 2, GroupAxis.CHANNEL, 16, AffineForm.SCALE_MIN, 0, true);
        cases.add(new Case("raw keys, values grouped along tokens, head 128, token blocks of 32", true, 128, 4, 4, 2, 1,
                1024, 0, List.of(StoredRun.raw(4, true, 128)), List.of(v2c), 32));
        // per-token rows of one group (the entry points compiled for KVTuner's bit pairs): each pair, both head
        // sizes, token blocks of 1 and 32, new tokens past the history, and a layer whose runs take two of them
        StoredRun r4 = new StoredRun(0, 8, 4, GroupAxis.TOKEN, 64, AffineForm.ZERO_POINT, -8, true);
        cases.add(new Case("per-token KV4 rows, batch 8, 4k, token blocks of 32", true, 64, 8, 4, 8, 1, 4096, 0,
                List.of(r4), List.of(r4), 32));
        StoredRun r4s = new StoredRun(0, 4, 4, GroupAxis.TOKEN, 64, AffineForm.SCALE_MIN, 0, true);
        StoredRun r2 = new StoredRun(0, 4, 2, GroupAxis.TOKEN, 64, AffineForm.ZERO_POINT, -2, true);
        cases.add(new Case("per-token K4V2 rows, 3 new tokens over 700, group 8", true, 64, 4, 8, 2, 3, 700, 0,
                List.of(r4s), List.of(r2), 1));
        cases.add(new Case("per-token KV2 rows, token blocks of 32", true, 64, 4, 2, 3, 1, 1024, 0, List.of(r2),
                List.of(r2), 32));
        StoredRun r8w = new StoredRun(0, 4, 8, GroupAxis.TOKEN, 128, AffineForm.ZERO_POINT, -128, true);
        StoredRun r4w = new StoredRun(0, 4, 4, GroupAxis.TOKEN, 128, AffineForm.ZERO_POINT, -8, true);
        cases.add(new Case("per-token KV8 rows, head 128, split", true, 128, 4, 4, 2, 1, 2048, 0, List.of(r8w),
                List.of(r8w), 32));
        cases.add(new Case("per-token K8V4 rows, head 128, 2 new tokens", true, 128, 4, 4, 2, 2, 600, 0,
                List.of(r8w), List.of(r4w), 1));
        StoredRun r4a = new StoredRun(0, 2, 4, GroupAxis.TOKEN, 64, AffineForm.ZERO_POINT, -8, true);
        StoredRun r8b = new StoredRun(2, 2, 8, GroupAxis.TOKEN, 64, AffineForm.SCALE_MIN, 0, true);
        StoredRun r4b = new StoredRun(2, 2, 4, GroupAxis.TOKEN, 64, AffineForm.SCALE_MIN, 0, true);
        cases.add(new Case("per-head rows, KV4 and K8V4, token blocks of 32", true, 64, 4, 4, 2, 1, 896, 0,
                List.of(r4a, r8b), List.of(r4a, r4b), 32));
        return cases;
    }

    /** A case's inputs on the host and on the device. */
    record Prepared(AttentionSpec spec, long[][] dims, MemorySegment[] host, MemorySegment[] onDevice, long outBytes) {
    }

    static Prepared prepare(Case c, int seed, Arena arena, CudaMemory device) {
        AttentionSpec spec = new AttentionSpec("test", c.kvHeads(), c.group(), c.headDim(), 0.125f, c.half(),
                c.keys(), c.values(), c.residual(), c.tokenBlock());
        SplittableRandom random = new SplittableRandom(seed);
        int heads = c.kvHeads() * c.group();
        int d = c.headDim();
        int total = c.quantized() + c.residual() + c.tokens();
        int n = spec.inputCount();
        long[][] dims = new long[n][];
        dims[0] = new long[] {c.batch(), heads, c.tokens(), d};
        dims[1] = new long[] {c.batch(), c.kvHeads(), c.tokens(), d};
        dims[2] = dims[1];
        dims[3] = new long[] {c.batch(), 1, c.tokens(), total};
        fillRunDims(spec.keys(), spec.keyInput(0), dims, c);
        fillRunDims(spec.values(), spec.valueInput(0), dims, c);
        if (c.residual() > 0) {
            dims[spec.residualInput()] = new long[] {c.batch(), c.kvHeads(), c.residual(), d};
            dims[spec.residualInput() + 1] = dims[spec.residualInput()];
        }
        MemorySegment[] host = new MemorySegment[n];
        MemorySegment[] onDevice = new MemorySegment[n];
        for (int i = 0; i < n; i++) {
            TensorElementType type = spec.inputType(i);
            long elements = 1;
            for (long x : dims[i]) {
                elements *= x;
            }
            host[i] = arena.allocate(Math.max(1, elements * type.byteSize()), 16);
            fill(host[i], type, elements, i == 3, random, c, total);
            onDevice[i] = MemorySegment.ofAddress(device.allocate(Math.max(16, host[i].byteSize())));
            device.upload(host[i], 0, onDevice[i].address(), host[i].byteSize());
        }
        long outBytes = (long) c.batch() * heads * c.tokens() * d * (c.half() ? 2 : 4);
        return new Prepared(spec, dims, host, onDevice, outBytes);
    }

    static Stream<Arguments> casesAndVariants() {
        Stream.Builder<Arguments> out = Stream.builder();
        for (AttentionKernel.Variant v : AttentionKernel.Variant.values()) {
            for (int i = 0; i < cases().size(); i++) {
                out.add(Arguments.of(i, v));
            }
        }
        return out.build();
    }

    @ParameterizedTest
    @MethodSource("casesAndVariants")
    void theKernelComputesWhatTheCpuComputes(int index, AttentionKernel.Variant variant) {
        Case c = cases().get(index);
        int kvBytes = c.half() ? 2 : 4;
        try (Arena arena = Arena.ofConfined(); CudaMemory device = new CudaMemory(0)) {
            Prepared p = prepare(c, index + 17, arena, device);
            AttentionSpec spec = p.spec();
            long outBytes = p.outBytes();
            MemorySegment expected = arena.allocate(outBytes, 16);
            AttentionCpu.compute(spec, p.host(), p.dims(), expected);
            AttentionKernel kernel = AttentionKernel.forDevice(0);
            AttentionKernel.Plan plan = AttentionKernel.plan(spec, p.dims());
            MemorySegment out = MemorySegment.ofAddress(device.allocate(outBytes));
            MemorySegment scratch = MemorySegment.ofAddress(device.allocate(plan.scratchFloats() * 4));
            device.synchronize();
            kernel.launch(spec, plan, p.onDevice(), out, scratch, MemorySegment.NULL, variant);
            MemorySegment actual = arena.allocate(outBytes, 16);
            device.download(out.address(), actual, 0, outBytes);
            device.synchronize();
            double largest = 0;
            double worst = 0;
            long count = outBytes / kvBytes;
            for (long i = 0; i < count; i++) {
                float e = AttentionCpu.read(expected, c.half(), i);
                float a = AttentionCpu.read(actual, c.half(), i);
                largest = Math.max(largest, Math.abs(e));
                worst = Math.max(worst, Math.abs(e - a));
            }
            double relative = worst / Math.max(largest, 1e-30);
            System.out.printf("%s, %s: %d split(s), worst difference %.2e of the largest |output| %.3f%n", c.name(),
                    variant, plan.mostSplits(), relative, largest);
            double tolerance = c.half() ? 2e-3 : 1e-4;
            assertTrue(relative <= tolerance, c.name() + ": differs by " + relative + " of the largest output");
        }
    }

    private static void fillRunDims(List<StoredRun> runs, int first, long[][] dims, Case c) {
        int i = first;
        for (StoredRun run : runs) {
            if (run.raw()) {
                dims[i++] = new long[] {c.quantized(), c.batch(), run.heads(), c.headDim()};
                continue;
            }
            dims[i++] = new long[] {c.quantized(), c.batch(), run.heads(), run.rowBytes(c.headDim())};
            long rows = run.axis() == GroupAxis.TOKEN ? c.quantized() : c.quantized() / run.groupSize();
            long[] params = {rows, c.batch(), run.heads(), run.paramsPerRow(c.headDim())};
            dims[i++] = params;
            dims[i++] = params;
        }
    }

    /** Random codes, parameters and values; the bias masks every fifth past position and the future. */
    private static void fill(MemorySegment s, TensorElementType type, long elements, boolean bias,
                             SplittableRandom random, Case c, int total) {
        for (long i = 0; i < elements; i++) {
            float value;
            if (bias) {
                int j = (int) (i % total);
                int qi = (int) (i / total % c.tokens());
                boolean future = j > c.quantized() + c.residual() + qi;
                boolean masked = future || j % 5 == 3 && j < c.quantized() + c.residual();
                value = masked ? (type == TensorElementType.FLOAT16 ? -65504f : -Float.MAX_VALUE) : 0f;
            } else {
                value = (float) random.nextDouble(-1, 1);
            }
            switch (type) {
                case UINT8 -> s.set(ValueLayout.JAVA_BYTE, i, (byte) random.nextInt(256));
                case FLOAT16 -> s.setAtIndex(ValueLayout.JAVA_SHORT, i, Float.floatToFloat16(value));
                case FLOAT -> s.setAtIndex(ValueLayout.JAVA_FLOAT, i, value);
                default -> throw new IllegalStateException(type.toString());
            }
        }
    }
}
