package dev.kvq.runtime.onnx;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** Reading what a run wrote into host buffers: logits rows and float16 K/V, widened to kvq's float32. */
final class HostOutputs {
    private static final ValueLayout.OfShort F16 = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;

    private HostOutputs() {
    }

    /** Copies the {@code vocab} logits starting at element {@code base} of {@code logits} into {@code out}. */
    static void logits(MemorySegment logits, long base, int vocab, boolean half, float[] out) {
        if (half) {
            for (int v = 0; v < vocab; v++) {
                out[v] = Float.float16ToFloat(logits.getAtIndex(F16, base + v));
            }
        } else {
            MemorySegment.copy(logits, F32, base * Float.BYTES, out, 0, vocab);
        }
    }

    /** Widens {@code count} float16 values from element {@code from} of {@code src} into element {@code to} of {@code dst}. */
    static void widen(MemorySegment src, long from, MemorySegment dst, long to, long count) {
        for (long i = 0; i < count; i++) {
            dst.setAtIndex(F32, to + i, Float.float16ToFloat(src.getAtIndex(F16, from + i)));
        }
    }
}
