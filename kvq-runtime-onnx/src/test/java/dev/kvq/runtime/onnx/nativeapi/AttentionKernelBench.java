package dev.kvq.runtime.onnx.nativeapi;

import dev.kvq.generate.spi.StoredRun;
import dev.kvq.generate.spi.StoredRun.GroupAxis;
import dev.kvq.spi.AffineForm;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Time of one layer's attention through kvq's CUDA kernel on the 1B bench shape (8 KV heads of 64, 32 query heads),
 * per cache and batch x context: {@code java ... AttentionKernelBench} on the GPU machine (tools/gpu_device_session.sh
 * phase kernel). Launches back to back on the default stream, timed over the whole loop after a warm-up, for each
 * kernel variant in turn on the same inputs.
 */
public final class AttentionKernelBench {
    private static final StoredRun KEYS_4 = new StoredRun(0, 8, 4, GroupAxis.TOKEN, 64, AffineForm.ZERO_POINT, -8,
            true);
    private static final StoredRun VALUES_4 = KEYS_4;
    private static final StoredRun KIVI_KEYS_4 = new StoredRun(0, 8, 4, GroupAxis.CHANNEL, 32, AffineForm.SCALE_MIN,
            0, true);
    private static final StoredRun VALUES_2 = new StoredRun(0, 8, 2, GroupAxis.TOKEN, 32, AffineForm.SCALE_MIN, 0,
            true);
    private static final StoredRun VALUES_2_ROWS = new StoredRun(0, 8, 2, GroupAxis.TOKEN, 64, AffineForm.ZERO_POINT,
            -2, true);
    private static final StoredRun RAW = StoredRun.raw(8, true, 64);

    private AttentionKernelBench() {
    }

    public static void main(String[] args) {
        if (args.length > 0 && args[0].equals("splits")) {
            // every split count for the tensor-core kernel at the batches the capacity mode reaches
            for (int[] shape : new int[][] {{111, 4096}, {31, 4096}, {8, 4096}}) {
                for (String cache : List.of("float16", "KV4")) {
                    sweep(cache, shape);
                }
            }
            return;
        }
        // optional filters, for a profiler: batch x context (32x4096), cache (KV4, or * for every one), token block
        // (32), kernel variants (MMA, or several: MMA_GENERAL,MMA)
        String onlyShape = args.length > 0 ? args[0] : null;
        String onlyCache = args.length > 1 && !args[1].equals("*") ? args[1] : null;
        String onlyBlock = args.length > 2 ? args[2] : null;
        List<AttentionKernel.Variant> variants = args.length > 3
                ? Arrays.stream(args[3].split(",")).map(AttentionKernel.Variant::valueOf).toList()
                : List.of(AttentionKernel.Variant.values());
        int[][] shapes = onlyShape == null ? new int[][] {{8, 4096}, {1, 16384}, {32, 4096}}
                : new int[][] {shape(onlyShape)};
        for (int[] shape : shapes) {
            for (String cache : List.of("float16", "KV4", "K4V2", "KIVI K4V2")) {
                for (int tokenBlock : new int[] {1, 32}) {
                    if ((onlyCache == null || onlyCache.equals(cache.replace(" ", "-")))
                            && (onlyBlock == null || onlyBlock.equals(String.valueOf(tokenBlock)))) {
                        bench(cache, shape, tokenBlock, variants);
                    }
                }
            }
        }
    }

    /** "BxT": batch B at context T. */
    private static int[] shape(String name) {
        String[] parts = name.split("x");
        return new int[] {Integer.parseInt(parts[0]), Integer.parseInt(parts[1])};
    }

    /**
     * A decode step of the 1B shape over {@code cache} ("float16", per-token "KV4" or "K4V2", or "KIVI K4V2") at batch
     * x context.
     */
    private static AttentionKernelTest.Case decodeCase(String cache, int[] shape, int tokenBlock) {
        List<StoredRun> keys = List.of(switch (cache) {
            case "float16" -> RAW;
            case "KV4", "K4V2" -> KEYS_4;
            default -> KIVI_KEYS_4;
        });
        List<StoredRun> values = List.of(switch (cache) {
            case "float16" -> RAW;
            case "KV4" -> VALUES_4;
            case "K4V2" -> VALUES_2_ROWS;
            default -> VALUES_2;
        });
        int residual = cache.equals("KIVI K4V2") ? 32 : 0;
        return new AttentionKernelTest.Case(cache, true, 64, 8, 4, shape[0], 1, shape[1] - residual, residual, keys,
                values, tokenBlock);
    }

    private static void bench(String cache, int[] shape, int tokenBlock, List<AttentionKernel.Variant> variants) {
        try (Arena arena = Arena.ofConfined(); CudaMemory device = new CudaMemory(0)) {
            var p = AttentionKernelTest.prepare(decodeCase(cache, shape, tokenBlock), 1, arena, device);
            AttentionKernel kernel = AttentionKernel.forDevice(0);
            AttentionKernel.Plan plan = AttentionKernel.plan(p.spec(), p.dims());
            MemorySegment out = MemorySegment.ofAddress(device.allocate(p.outBytes()));
            MemorySegment scratch = MemorySegment.ofAddress(device.allocate(plan.scratchFloats() * 4));
            device.synchronize();
            long bytes = 0;
            for (int i = 4; i < p.host().length; i++) {
                bytes += p.host()[i].byteSize();
            }
            StringBuilder line = new StringBuilder(String.format("%-10s batch %3d x %5d, token block %2d: %d "
                    + "split(s)", cache, shape[0], shape[1], tokenBlock, plan.mostSplits()));
            for (AttentionKernel.Variant v : variants) {
                double us = time(kernel, p, plan, out, scratch, device, v);
                line.append(String.format(", %s %8.1f us per layer (%6.1f GB/s of cache)", v, us,
                        bytes / us / 1e3));
            }
            System.out.println(line);
        }
    }

    /** The tensor-core kernel over the same inputs with 1 to 16 splits, token blocks of 32. */
    private static void sweep(String cache, int[] shape) {
        try (Arena arena = Arena.ofConfined(); CudaMemory device = new CudaMemory(0)) {
            var p = AttentionKernelTest.prepare(decodeCase(cache, shape, 32), 1, arena, device);
            AttentionKernel kernel = AttentionKernel.forDevice(0);
            AttentionKernel.Plan chosen = AttentionKernel.plan(p.spec(), p.dims());
            long rows = chosen.perStretch().getFirst().rows();
            // the distinct splits of 1 to 16 blocks per row (a count may round to the one before)
            List<AttentionKernel.Plan> plans = new ArrayList<>();
            long scratchFloats = 1;
            for (int splits = 1; splits <= 16; splits++) {
                AttentionKernel.Split split = AttentionKernel.split(p.spec(), chosen.shape(), rows, splits);
                if (plans.isEmpty() || plans.getLast().mostSplits() != split.splits()) {
                    plans.add(new AttentionKernel.Plan(chosen.shape(), List.of(split)));
                    scratchFloats = Math.max(scratchFloats, split.scratchFloats());
                }
            }
            MemorySegment out = MemorySegment.ofAddress(device.allocate(p.outBytes()));
            MemorySegment scratch = MemorySegment.ofAddress(device.allocate(scratchFloats * 4));
            device.synchronize();
            StringBuilder line = new StringBuilder(String.format("%-8s batch %3d x %5d (chosen %d):", cache, shape[0],
                    shape[1], chosen.mostSplits()));
            for (AttentionKernel.Plan plan : plans) {
                line.append(String.format(" %d:%.1f", plan.mostSplits(), time(kernel, p, plan, out, scratch, device,
                        AttentionKernel.Variant.MMA)));
            }
            System.out.println(line);
        }
    }

    /** Microseconds per launch of {@code variant}: 200 back to back after 20 to warm up. */
    private static double time(AttentionKernel kernel, AttentionKernelTest.Prepared p, AttentionKernel.Plan plan,
                               MemorySegment out, MemorySegment scratch, CudaMemory device,
                               AttentionKernel.Variant variant) {
        for (int i = 0; i < 20; i++) {
            kernel.launch(p.spec(), plan, p.onDevice(), out, scratch, MemorySegment.NULL, variant);
        }
        device.synchronize();
        int n = 200;
        long start = System.nanoTime();
        for (int i = 0; i < n; i++) {
            kernel.launch(p.spec(), plan, p.onDevice(), out, scratch, MemorySegment.NULL, variant);
        }
        device.synchronize();
        return (System.nanoTime() - start) / 1e3 / n;
    }
}
