package dev.kvq.runtime.onnx.nativeapi;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * A few native words per thread for the out-pointers and shapes that C calls take, so that the calls made every
 * decode step allocate nothing. Each use is over before the call returns, so a thread never needs two at once.
 */
final class NativeScratch {
    /** Shapes of more dimensions than this take a short-lived arena instead. */
    static final int MAX_RANK = 16;

    // Arena.ofAuto: the memory goes when its thread (and so its ThreadLocal value) does.
    private static final ThreadLocal<NativeScratch> PER_THREAD = ThreadLocal.withInitial(
            () -> new NativeScratch(Arena.ofAuto().allocate(ValueLayout.JAVA_LONG, 1 + MAX_RANK)));

    private final MemorySegment outPointer;
    private final MemorySegment dims;

    private NativeScratch(MemorySegment words) {
        outPointer = words.asSlice(0, ValueLayout.ADDRESS.byteSize());
        dims = words.asSlice(ValueLayout.JAVA_LONG.byteSize());
    }

    static NativeScratch get() {
        return PER_THREAD.get();
    }

    /** One pointer-sized slot a C function writes its result to; cleared first. */
    MemorySegment outPointer() {
        outPointer.set(ValueLayout.ADDRESS, 0, MemorySegment.NULL);
        return outPointer;
    }

    /** {@code shape} as int64_t[] (at most {@link #MAX_RANK} entries). */
    MemorySegment dims(long[] shape) {
        MemorySegment.copy(shape, 0, dims, ValueLayout.JAVA_LONG, 0, shape.length);
        return dims;
    }
}
