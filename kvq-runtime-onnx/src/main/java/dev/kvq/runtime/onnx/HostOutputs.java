package dev.kvq.runtime.onnx;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * Reading what a run wrote into host buffers: logits rows and float16 K/V, widened to kvq's float32. Every decode step
 * reads each sequence's new K/V of every layer, so values go in chunks through arrays: one bulk copy in, a conversion
 * loop the JIT vectorizes, one bulk copy out (element by element, each access would check the segment).
 */
final class HostOutputs {
    private static final ValueLayout.OfShort F16 = ValueLayout.JAVA_SHORT_UNALIGNED;
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED;
    private static final int CHUNK = 2048;
    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    private HostOutputs() {
    }

    /** Copies the {@code vocab} logits starting at element {@code base} of {@code logits} into {@code out}. */
    static void logits(MemorySegment logits, long base, int vocab, boolean half, float[] out) {
        if (half) {
            short[] halves = SCRATCH.get().halves;
            for (int at = 0; at < vocab; at += CHUNK) {
                int n = Math.min(CHUNK, vocab - at);
                MemorySegment.copy(logits, F16, (base + at) * Short.BYTES, halves, 0, n);
                for (int i = 0; i < n; i++) {
                    out[at + i] = Float.float16ToFloat(halves[i]);
                }
            }
        } else {
            MemorySegment.copy(logits, F32, base * Float.BYTES, out, 0, vocab);
        }
    }

    /** Widens {@code count} float16 values from element {@code from} of {@code src} into element {@code to} of {@code dst}. */
    static void widen(MemorySegment src, long from, MemorySegment dst, long to, long count) {
        Scratch scratch = SCRATCH.get();
        short[] halves = scratch.halves;
        float[] floats = scratch.floats;
        for (long at = 0; at < count; at += CHUNK) {
            int n = (int) Math.min(CHUNK, count - at);
            MemorySegment.copy(src, F16, (from + at) * Short.BYTES, halves, 0, n);
            for (int i = 0; i < n; i++) {
                floats[i] = Float.float16ToFloat(halves[i]);
            }
            MemorySegment.copy(floats, 0, dst, F32, (to + at) * Float.BYTES, n);
        }
    }

    private static final class Scratch {
        final short[] halves = new short[CHUNK];
        final float[] floats = new float[CHUNK];
    }
}
