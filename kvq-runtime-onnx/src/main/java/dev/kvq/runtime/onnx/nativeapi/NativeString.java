package dev.kvq.runtime.onnx.nativeapi;

import dev.kvq.KvqException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A string encoded once as a NUL-terminated UTF-8 C string, such as a model input's name bound every decode step.
 * Its memory is freed by the garbage collector once the object is unreachable.
 */
public final class NativeString {
    private final String value;
    private final MemorySegment encoded;

    private NativeString(String value) {
        this.value = value;
        this.encoded = Arena.ofAuto().allocateFrom(value);
    }

    public static NativeString of(String value) {
        KvqException.require(value != null && value.indexOf('\0') < 0, "a C string cannot hold NUL: " + value);
        return new NativeString(value);
    }

    public String value() {
        return value;
    }

    MemorySegment segment() {
        return encoded;
    }

    @Override
    public String toString() {
        return value;
    }
}
