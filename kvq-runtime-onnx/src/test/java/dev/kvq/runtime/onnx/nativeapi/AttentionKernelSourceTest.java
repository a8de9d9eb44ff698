package dev.kvq.runtime.onnx.nativeapi;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.spi.StoredRun;
import dev.kvq.generate.spi.StoredRun.GroupAxis;
import dev.kvq.spi.AffineForm;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * The shipped attention PTX declares its kernels (fourteen, and one per head size and {@link
 * AttentionKernel#ROW_PAIRS} pair) at ISA 7.0 with the one parameter struct the launcher writes
 * ({@link AttentionKernel#PARAMS_BYTES} bytes); the launcher splits work so every split holds whole tiles; and layers
 * the kernel cannot read stay with the CPU's operator or the dequantizing graph. (That the PTX is what its source
 * compiles to is checked with {@link ScatterKernelSourceTest}'s run of tools/build_kernels.sh --check.)
 */
class AttentionKernelSourceTest {
    @Test
    void everyKernelTakesTheStructTheLauncherWrites() {
        String ptx = CudaModule.source(AttentionKernel.PTX_RESOURCE);
        assertTrue(ptx.startsWith(".version 7.0\n"), "ISA version: " + ptx.lines().findFirst().orElse(""));
        List<String> kernels = new ArrayList<>(List.of("kvq_attention_f16", "kvq_attention_f32",
                "kvq_attention_combine_f16", "kvq_attention_combine_f32", "kvq_attention_warps4_f16",
                "kvq_attention_warps4_f32", "kvq_attention_warps8_f16", "kvq_attention_warps8_f32",
                "kvq_attention_mma64_raw_f16", "kvq_attention_mma64_token_f16", "kvq_attention_mma64_channel_f16",
                "kvq_attention_mma128_raw_f16", "kvq_attention_mma128_token_f16", "kvq_attention_mma128_channel_f16"));
        for (int[] pair : AttentionKernel.ROW_PAIRS) {
            for (int headDim : new int[] {64, 128}) {
                kernels.add("kvq_attention_mma" + headDim + "_k" + pair[0] + "v" + pair[1] + "_f16");
            }
        }
        assertEquals(24, kernels.size());
        assertEquals(kernels.size(), Pattern.compile("\\.entry ").matcher(ptx).results().count(),
                "no entry point the launcher does not load");
        for (String kernel : kernels) {
            Matcher m = Pattern.compile("\\.entry " + kernel + "\\(\\s*\\.param \\.align 8 \\.b8 " + kernel
                    + "_param_0\\[(\\d+)]\\s*\\)").matcher(ptx);
            assertTrue(m.find(), kernel + " with one struct parameter");
            assertEquals(AttentionKernel.PARAMS_BYTES, Integer.parseInt(m.group(1)), kernel + "'s parameter size");
        }
    }

    @Test
    void splitsHoldWholeTilesAndCoverEveryToken() {
        StoredRun k4 = new StoredRun(0, 8, 4, GroupAxis.TOKEN, 32, AffineForm.ZERO_POINT, -8, true);
        for (int headDim : new int[] {64, 128}) {
            AttentionSpec spec = new AttentionSpec("a", 8, 4, headDim, 0.125f, true, List.of(k4), List.of(k4), 0, 1);
            int tile = Math.min(128, 8192 / headDim);
            for (long rows : new long[] {1, 8, 64, 527, 528, 100_000}) {
                for (int quantized : new int[] {0, 1, 127, 4096, 16_383}) {
                    var shape = new AttentionCpu.Shape(1, 1, quantized, 0, 0, 0);
                    AttentionKernel.Split plan = AttentionKernel.split(spec, shape, rows);
                    int total = shape.total();
                    assertEquals(0, plan.tokensPerSplit() % tile, "whole tiles");
                    assertTrue(plan.tokensPerSplit() <= AttentionKernel.MOST_TOKENS_PER_SPLIT, "short blocks");
                    assertTrue((long) plan.splits() * plan.tokensPerSplit() >= total, "every token in a split");
                    assertTrue((long) (plan.splits() - 1) * plan.tokensPerSplit() < total, "no empty split");
                    assertEquals(plan.splits() == 1 ? 1 : rows * plan.splits() * 4 * (headDim + 2),
                            plan.scratchFloats(), "scratch for the partial results");
                }
            }
        }
    }

    @Test
    void theGpuPlanReadsOnlyTheShapesTheOperatorFetches() {
        // on CUDA the operator asks ONNX Runtime for the shapes of shapeRead inputs only; the plan needs no other
        StoredRun kc = new StoredRun(0, 2, 4, GroupAxis.CHANNEL, 32, AffineForm.SCALE_MIN, 0, true);
        StoredRun v2 = new StoredRun(0, 2, 2, GroupAxis.TOKEN, 32, AffineForm.SCALE_MIN, 0, true);
        AttentionSpec spec = new AttentionSpec("a", 2, 4, 64, 0.125f, true, List.of(kc), List.of(v2), 32, 1);
        long[][] dims = new long[spec.inputCount()][];
        dims[0] = new long[] {3, 8, 1, 64};
        dims[1] = new long[] {3, 2, 1, 64};
        dims[2] = dims[1];
        dims[3] = new long[] {3, 1, 1, 256 + 32 + 1};
        dims[4] = new long[] {256, 3, 2, 32};
        dims[5] = new long[] {8, 3, 2, 64};
        dims[6] = dims[5];
        dims[7] = new long[] {256, 3, 2, 16};
        dims[8] = new long[] {256, 3, 2, 2};
        dims[9] = dims[8];
        dims[10] = new long[] {3, 2, 32, 64};
        dims[11] = dims[10];
        long[][] fetched = new long[dims.length][];
        for (int i = 0; i < dims.length; i++) {
            fetched[i] = spec.shapeRead(i) ? dims[i] : null;
        }
        assertEquals(AttentionKernel.plan(spec, dims), AttentionKernel.plan(spec, fetched));
        assertEquals(289, AttentionKernel.plan(spec, fetched).shape().total(), "quantized, residual and new tokens");
    }

    @Test
    void aPlanRefusesMoreRowsThanTheKernelIndexes() {
        StoredRun k4 = new StoredRun(0, 8, 4, GroupAxis.TOKEN, 64, AffineForm.ZERO_POINT, -8, true);
        AttentionSpec spec = new AttentionSpec("a", 8, 4, 64, 0.125f, true, List.of(k4), List.of(k4), 0, 1);
        // 2^31 / 8 heads / 4 sequences = 67,108,864 tokens: one more row than a 32-bit index holds
        assertEquals(67_108_863, AttentionKernel.plan(spec, dims(spec, 4, 67_108_863)).shape().quantized());
        KvqException e = assertThrows(KvqException.class, () -> AttentionKernel.plan(spec, dims(spec, 4, 67_108_864)));
        assertEquals(ErrorCode.UNSUPPORTED, e.code());
        assertTrue(e.getMessage().contains("4 sequences x 67108864 quantized tokens x 8 KV heads"), e.getMessage());
    }

    /** Shapes of a decode step of {@code batch} sequences over {@code quantized} tokens, per-token runs. */
    private static long[][] dims(AttentionSpec spec, int batch, int quantized) {
        long[][] dims = new long[spec.inputCount()][];
        dims[0] = new long[] {batch, 32, 1, 64};
        dims[1] = new long[] {batch, 8, 1, 64};
        dims[2] = dims[1];
        dims[3] = new long[] {batch, 1, 1, quantized + 1L};
        for (int i = 4; i < dims.length; i++) {
            dims[i] = new long[] {quantized, batch, 8, 32};
        }
        return dims;
    }

    @Test
    void theKernelTakesWholeChunksAndGroupsOfSixteen() {
        StoredRun k4 = new StoredRun(0, 2, 4, GroupAxis.TOKEN, 32, AffineForm.ZERO_POINT, -8, true);
        StoredRun small = new StoredRun(0, 2, 4, GroupAxis.TOKEN, 8, AffineForm.ZERO_POINT, -8, true);
        assertTrue(AttentionSpec.supported(4, 64, List.of(k4), List.of(k4), true));
        assertFalse(AttentionSpec.supported(4, 64, List.of(small), List.of(k4), true), "groups of 8 channels");
        assertFalse(AttentionSpec.supported(4, 16, List.of(k4), List.of(k4), true), "head size 16");
        assertFalse(AttentionSpec.supported(16, 64, List.of(k4), List.of(k4), true), "16 query heads per KV head");
        assertTrue(AttentionSpec.supported(4, 16, List.of(small), List.of(small), false), "the CPU takes any");
    }

    @Test
    void theTensorCoreKernelTakesFloat16ModelsAndNamesHowItHoldsTheKeys() {
        StoredRun k4 = new StoredRun(0, 2, 4, GroupAxis.TOKEN, 32, AffineForm.ZERO_POINT, -8, true);
        StoredRun kc = new StoredRun(0, 2, 4, GroupAxis.CHANNEL, 32, AffineForm.SCALE_MIN, 0, true);
        StoredRun kc8 = new StoredRun(0, 2, 4, GroupAxis.CHANNEL, 8, AffineForm.SCALE_MIN, 0, true);
        StoredRun half = StoredRun.raw(2, true, 64);
        StoredRun single = StoredRun.raw(2, false, 64);
        assertEquals(AttentionKernel.Keys.TOKEN, mmaKeys(true, 64, 4, k4, k4));
        assertEquals(AttentionKernel.Keys.CHANNEL, mmaKeys(true, 128, 8, kc, k4));
        assertEquals(AttentionKernel.Keys.RAW, mmaKeys(true, 64, 2, half, kc));
        assertEquals(null, mmaKeys(false, 64, 4, k4, k4), "a float32 model");
        assertEquals(null, mmaKeys(true, 32, 4, k4, k4), "head size 32");
        assertEquals(null, mmaKeys(true, 64, 4, kc8, k4), "key groups of 8 tokens, less than a tile");
        assertEquals(null, mmaKeys(true, 64, 4, single, k4), "float32 raw keys");
        assertEquals(null, mmaKeys(true, 64, 4, k4, single), "float32 raw values");
    }

    @Test
    void perTokenRowsOfOneGroupTakeTheEntryPointOfTheirBitWidths() {
        StoredRun k4 = new StoredRun(0, 2, 4, GroupAxis.TOKEN, 64, AffineForm.ZERO_POINT, -8, true);
        StoredRun v2 = new StoredRun(0, 2, 2, GroupAxis.TOKEN, 64, AffineForm.SCALE_MIN, 0, true);
        StoredRun k8 = new StoredRun(0, 2, 8, GroupAxis.TOKEN, 128, AffineForm.ZERO_POINT, -128, true);
        StoredRun v4 = new StoredRun(0, 2, 4, GroupAxis.TOKEN, 128, AffineForm.ZERO_POINT, -8, true);
        StoredRun k4g32 = new StoredRun(0, 2, 4, GroupAxis.TOKEN, 32, AffineForm.ZERO_POINT, -8, true);
        StoredRun k4float = new StoredRun(0, 2, 4, GroupAxis.TOKEN, 64, AffineForm.ZERO_POINT, -8, false);
        StoredRun kc = new StoredRun(0, 2, 4, GroupAxis.CHANNEL, 64, AffineForm.SCALE_MIN, 0, true);
        assertArrayEquals(new int[] {4, 4}, pair(64, k4, k4));
        assertArrayEquals(new int[] {4, 2}, pair(64, k4, v2));
        assertArrayEquals(new int[] {8, 4}, pair(128, k8, v4));
        assertEquals(-1, rowPair(true, 64, v2, k4), "K2V4 is not one of the pairs");
        assertEquals(-1, rowPair(true, 128, k4, k4), "groups of 64 channels in heads of 128");
        assertEquals(-1, rowPair(true, 64, k4g32, k4), "two groups per row");
        assertEquals(-1, rowPair(true, 64, k4float, k4), "float32 parameters");
        assertEquals(-1, rowPair(true, 64, kc, k4), "keys grouped along channels");
        assertEquals(-1, rowPair(true, 64, k4, StoredRun.raw(2, true, 64)), "raw values");
        assertEquals(-1, rowPair(false, 64, k4, k4), "a float32 model");
    }

    private static int[] pair(int headDim, StoredRun key, StoredRun value) {
        int i = rowPair(true, headDim, key, value);
        return i < 0 ? null : AttentionKernel.ROW_PAIRS[i];
    }

    private static int rowPair(boolean half, int headDim, StoredRun key, StoredRun value) {
        AttentionSpec spec = new AttentionSpec("a", 2, 4, headDim, 0.125f, half, List.of(key), List.of(value), 0, 1);
        return AttentionKernel.rowPair(spec, spec.stretches().getFirst());
    }

    private static AttentionKernel.Keys mmaKeys(boolean half, int headDim, int group, StoredRun key, StoredRun value) {
        AttentionSpec spec = new AttentionSpec("a", 2, group, headDim, 0.125f, half, List.of(key), List.of(value), 0,
                1);
        return AttentionKernel.mmaKeys(spec, spec.stretches().getFirst());
    }

    @Test
    void theKernelVariantIsChosenByAPropertyThatNamesTheChoicesWhenWrong() {
        String before = System.getProperty("kvq.cuda.attention");
        try {
            System.clearProperty("kvq.cuda.attention");
            assertEquals(AttentionKernel.Variant.MMA, AttentionKernel.Variant.configured());
            System.setProperty("kvq.cuda.attention", "warps");
            assertEquals(AttentionKernel.Variant.WARPS, AttentionKernel.Variant.configured());
            System.setProperty("kvq.cuda.attention", "block");
            assertEquals(AttentionKernel.Variant.BLOCK, AttentionKernel.Variant.configured());
            System.setProperty("kvq.cuda.attention", "mma-general");
            assertEquals(AttentionKernel.Variant.MMA_GENERAL, AttentionKernel.Variant.configured());
            System.setProperty("kvq.cuda.attention", "tiles");
            dev.kvq.KvqException e = org.junit.jupiter.api.Assertions.assertThrows(dev.kvq.KvqException.class,
                    AttentionKernel.Variant::configured);
            assertTrue(e.getMessage().contains("-Dkvq.cuda.attention=tiles")
                    && e.getMessage().contains("block, warps, mma or mma-general"), e.getMessage());
        } finally {
            if (before == null) {
                System.clearProperty("kvq.cuda.attention");
            } else {
                System.setProperty("kvq.cuda.attention", before);
            }
        }
    }
}
