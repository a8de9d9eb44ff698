package dev.kvq.generate.spi;

import dev.kvq.KvqException;
import dev.kvq.spi.AffineForm;

/**
 * How a run of consecutive KV heads of one layer's keys or values is stored where the model runs (placement
 * {@code device}). Its tensors, {@code T} being the token capacity in use and {@code B} the batch:
 * <ul>
 *   <li>{@code codes}: uint8 {@code [T, B, heads, headDim * bits / 8]}, token-major rows of {@code headDim} codes. 8 bits:
 *       one code per byte. 4 and 2 bits: each row is {@code headDim / (128 / bits)} planar chunks of 16 bytes, byte
 *       {@code k} of a chunk holding codes {@code k + 16 p} of that chunk at bit offset {@code p * bits}
 *       ({@link dev.kvq.spi.BitPacking}'s layout).</li>
 *   <li>{@code scales} and {@code zeros}: float16 ({@link #halfParams}) or float32; for {@link GroupAxis#TOKEN}
 *       {@code [T, B, heads, headDim / groupSize]}, for {@link GroupAxis#CHANNEL} {@code [T / groupSize, B, heads,
 *       headDim]}.</li>
 * </ul>
 * A code {@code u} decodes, in float32, to {@code ((u + codeOffset) + zero) * scale} ({@link AffineForm#ZERO_POINT})
 * or {@code u * scale + zero} ({@link AffineForm#SCALE_MIN}), exactly as {@link dev.kvq.spi.PackedBlock} does.
 * Tokens are on the outer axis so that the first {@code T} tokens of a buffer of larger capacity are one
 * contiguous tensor. A layout may keep rows in blocks of tokens instead ({@link QuantizedPastLayout#tokenBlock()}):
 * {@code [T / block, B, heads, block, ...]} for codes, raw values and per-token parameters.
 *
 * @param firstHead the run's first KV head
 * @param heads KV heads in the run
 * @param bits 2, 4 or 8; or 16 / 32 for a raw run ({@link #raw()})
 * @param axis which way groups run
 * @param groupSize elements per group
 * @param form how codes decode
 * @param codeOffset added to codes before the zero ({@link AffineForm#ZERO_POINT} only)
 * @param halfParams whether scales and zeros are float16
 */
public record StoredRun(int firstHead, int heads, int bits, GroupAxis axis, int groupSize, AffineForm form,
                        int codeOffset, boolean halfParams) {
    public StoredRun {
        if (bits != 2 && bits != 4 && bits != 8 && bits != 16 && bits != 32) {
            throw new KvqException(dev.kvq.ErrorCode.UNSUPPORTED, "placement device stores 2-, 4- and 8-bit codes, not "
                    + bits + "-bit; use placement host for this configuration");
        }
        if (heads < 1 || firstHead < 0 || groupSize < 1) {
            throw new KvqException(dev.kvq.ErrorCode.ILLEGAL_ARGUMENT, "invalid run: first head " + firstHead + ", "
                    + heads + " heads, group size " + groupSize);
        }
    }

    /**
     * Whether the run holds its values unquantized (a full-precision cache on the device): {@code codes} are then
     * float16 (16 bits) or float32 (32 bits) values {@code [T, B, heads, headDim]}, and the run has no scales or zeros.
     */
    public boolean raw() {
        return bits > 8;
    }

    /** A raw run of {@code heads} heads in float16 or float32. */
    public static StoredRun raw(int heads, boolean half, int headDim) {
        return new StoredRun(0, heads, half ? 16 : 32, GroupAxis.TOKEN, headDim, AffineForm.SCALE_MIN, 0, half);
    }

    /** Bytes of one token's codes of one head. */
    public int rowBytes(int headDim) {
        return headDim * bits / 8;
    }

    /** Parameters (scales or zeros) per token per head for {@link GroupAxis#TOKEN}, per token group for CHANNEL. */
    public int paramsPerRow(int headDim) {
        if (raw()) {
            return 0;
        }
        return axis == GroupAxis.TOKEN ? headDim / groupSize : headDim;
    }

    /** Bytes of one scale or zero. */
    public int paramBytes() {
        return halfParams ? 2 : 4;
    }

    /** Which way a run's groups go. */
    public enum GroupAxis {
        /** Groups of {@code groupSize} consecutive channels of one token (per-token quantization). */
        TOKEN,
        /** Groups of {@code groupSize} consecutive tokens of one channel (per-channel, KIVI keys). */
        CHANNEL
    }
}
