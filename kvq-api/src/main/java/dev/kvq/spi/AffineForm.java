package dev.kvq.spi;

/**
 * How a code {@code u} (unsigned, {@code 0 .. 2^bits-1}) and its group's two float parameters give back a
 * value. Both forms reproduce their reference's float arithmetic exactly, operation for operation.
 */
public enum AffineForm {
    /**
     * {@code x = ((u + codeOffset) + zero) * scale}. KVTuner's vanilla quantizer ({@code (q + z) * s} with signed
     * {@code q = u + codeOffset}, codeOffset = -2^(bits-1)), HQQ ({@code (u - zero) * scale}: the block stores
     * the negated zero) and symmetric int8 (zero 0).
     */
    ZERO_POINT,
    /**
     * {@code x = u * scale + min}. optimum-quanto ({@code scale * q - shift}: min = -shift) and KIVI; a group of
     * zero range (scale 0) decodes to min exactly.
     */
    SCALE_MIN
}
