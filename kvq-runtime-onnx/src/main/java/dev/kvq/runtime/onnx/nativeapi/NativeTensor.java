package dev.kvq.runtime.onnx.nativeapi;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * An ONNX Runtime tensor ({@code OrtValue}) over memory kvq owns, on the host or on a CUDA device: ONNX Runtime
 * reads and writes that memory in place and never frees it. The memory must outlive the tensor and every run it
 * is bound to. Closing the tensor releases only the OrtValue; closing twice does nothing.
 */
public final class NativeTensor implements AutoCloseable {
    private final long address;
    private final long byteLength;
    private final TensorElementType elementType;
    private final long[] shape;
    private final String location;
    private final Object memoryOwner; // keeps a segment's arena reachable while the tensor is
    private MemorySegment handle;

    private NativeTensor(MemoryInfo memory, long address, long byteLength, TensorElementType elementType,
                         long[] shape, Object memoryOwner) {
        this.address = address;
        this.byteLength = byteLength;
        this.elementType = elementType;
        this.shape = shape;
        this.location = memory.toString();
        this.memoryOwner = memoryOwner;
        this.handle = OrtApi.get().createTensorWithData(memory.handle(), MemorySegment.ofAddress(address), byteLength,
                shape, elementType.onnxCode());
    }

    /**
     * A tensor of {@code shape} over {@code byteLength} bytes at {@code address} in {@code memory} (a device address
     * for CUDA memory). The bytes may be more than the shape needs (a buffer with room to grow), never fewer.
     */
    public static NativeTensor of(MemoryInfo memory, long address, long byteLength, TensorElementType elementType,
                                  long... shape) {
        long[] dims = checkedShape(shape);
        long needed = denseBytes(elementType, dims);
        if (byteLength < needed) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, elementType + Arrays.toString(dims) + " needs " + needed
                    + " bytes, but the memory holds " + byteLength);
        }
        if (address == 0 && byteLength != 0) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "a tensor of " + needed + " bytes needs an address");
        }
        return new NativeTensor(memory, address, byteLength, elementType, dims, null);
    }

    /** A tensor of {@code shape} over a native host segment; the tensor keeps the segment reachable. */
    public static NativeTensor of(MemoryInfo memory, MemorySegment data, TensorElementType elementType,
                                  long... shape) {
        KvqException.require(data.isNative(), "a tensor needs native memory, not a heap segment");
        if (memory.isCuda()) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "a host segment cannot back a tensor in " + memory);
        }
        long[] dims = checkedShape(shape);
        long needed = denseBytes(elementType, dims);
        if (data.byteSize() < needed) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, elementType + Arrays.toString(dims) + " needs " + needed
                    + " bytes, but the segment holds " + data.byteSize());
        }
        return new NativeTensor(memory, data.address(), data.byteSize(), elementType, dims, data);
    }

    /** Bytes a dense tensor of this type and shape takes. */
    public static long byteSize(TensorElementType elementType, long... shape) {
        return denseBytes(elementType, checkedShape(shape));
    }

    private static long denseBytes(TensorElementType elementType, long[] dims) {
        long elements = 1;
        for (long dim : dims) {
            elements = Math.multiplyExact(elements, dim);
        }
        return Math.multiplyExact(elements, (long) elementType.byteSize());
    }

    public long address() {
        return address;
    }

    /** The bytes of memory under the tensor (at least what its shape needs). */
    public long byteLength() {
        return byteLength;
    }

    public TensorElementType elementType() {
        return elementType;
    }

    public long[] shape() {
        return shape.clone();
    }

    synchronized MemorySegment handle() {
        if (handle == null) {
            throw new KvqException(ErrorCode.CLOSED, "tensor " + this + " is closed");
        }
        return handle;
    }

    @Override
    public synchronized void close() {
        if (handle != null) {
            OrtApi.get().releaseValue(handle);
            handle = null;
        }
    }

    @Override
    public String toString() {
        return elementType + Arrays.toString(shape) + " at 0x" + Long.toHexString(address) + " on " + location;
    }

    private static long[] checkedShape(long[] shape) {
        KvqException.require(shape != null, "shape must not be null");
        for (long dim : shape) {
            if (dim < 0) {
                throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "tensor dimensions must be >= 0, was "
                        + Arrays.toString(shape));
            }
        }
        return shape.clone();
    }
}
