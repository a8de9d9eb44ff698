package dev.kvq.runtime.onnx.nativeapi;

import dev.kvq.KvqException;
import java.lang.foreign.MemorySegment;
import java.util.Optional;

/**
 * Memory where an execution provider reads its tensors: host memory for the CPU provider ({@link HostMemory}),
 * memory of one GPU for the CUDA provider ({@link CudaMemory}). Blocks are named by their address (a device
 * address on a GPU, not readable from Java) and made into tensors with {@link NativeTensor#of(MemoryInfo, long,
 * long, TensorElementType, long...) NativeTensor.of(memoryInfo(), address, ...)}.
 *
 * <p>Every transfer is checked against the blocks this object holds, so a wrong address or length fails with a
 * {@link KvqException} instead of corrupting memory. Writes to the device (zero-fill, upload, copy) may still be
 * under way when the call returns; {@link #synchronize()} waits for them, so call it before a run reads what was
 * written, and leave the source of an upload from native (staging) memory unchanged until then: it may still be read.
 * {@link #download} returns once the bytes are in {@code dst}. Closing frees every block and staging buffer; closing
 * twice does nothing. Thread-safe.
 */
public interface DeviceMemory extends AutoCloseable {

    /** Memory for {@code cpu} ({@link HostMemory}), {@code cuda} or {@code cuda:N} ({@link CudaMemory}). */
    static DeviceMemory forDevice(String device) {
        if ("cpu".equals(device)) {
            return new HostMemory();
        }
        if (device != null && device.matches("cuda(:\\d{1,9})?")) {
            int id = device.contains(":") ? Integer.parseInt(device.substring(device.indexOf(':') + 1)) : 0;
            return new CudaMemory(id);
        }
        throw KvqException.config("device must be cpu, cuda or cuda:N, was '" + device + "'");
    }

    /** {@code cpu} or {@code cuda:N}. */
    String device();

    /** A new block of {@code bytes} (more than 0), zero-filled; returns its address. */
    long allocate(long bytes);

    /** Frees a block that {@link #allocate} returned. */
    void free(long address);

    /** Copies {@code bytes} from host memory {@code src} at {@code srcOffset} to this memory at {@code dstAddress}. */
    void upload(MemorySegment src, long srcOffset, long dstAddress, long bytes);

    /**
     * Copies {@code height} rows of {@code widthBytes} each from host memory, whose rows start {@code srcPitch}
     * bytes apart from {@code srcOffset} on, to rows {@code dstPitch} bytes apart from {@code dstAddress} on; bytes
     * between the rows are left as they were.
     */
    void upload2d(MemorySegment src, long srcOffset, long srcPitch, long dstAddress, long dstPitch, long widthBytes,
                  long height);

    /** Longs per piece of {@link #uploadBatch}. */
    int WORDS_PER_PIECE = 5;

    /**
     * Copies {@code count} pieces from host memory {@code src}, each as {@link #upload2d} would with its rows one after
     * the other in {@code src}: piece {@code i} is {@code pieces[5i + 4]} rows of {@code pieces[5i + 3]} bytes from
     * offset {@code pieces[5i]} on, to rows {@code pieces[5i + 2]} bytes apart from {@code pieces[5i + 1]} on. Every
     * piece is checked before any is moved. From {@link #allocateStaging staging} memory of a GPU the pieces take one
     * kernel launch together; otherwise one transfer each.
     */
    void uploadBatch(MemorySegment src, long[] pieces, int count);

    /** Copies {@code bytes} within this memory; the two ranges must not overlap. */
    void copy(long srcAddress, long dstAddress, long bytes);

    /**
     * Copies {@code height} rows of {@code widthBytes} each within this memory, rows {@code srcPitch} bytes apart at
     * the source and {@code dstPitch} apart at the destination; the two regions must not overlap.
     */
    void copy2d(long srcAddress, long srcPitch, long dstAddress, long dstPitch, long widthBytes, long height);

    /** Copies {@code bytes} from this memory at {@code srcAddress} to host memory {@code dst} at {@code dstOffset}. */
    void download(long srcAddress, MemorySegment dst, long dstOffset, long bytes);

    /** Waits until every write to this memory issued so far is done. */
    void synchronize();

    /** Bytes of the blocks this object holds now (staging buffers not counted). */
    long bytesAllocated();

    /** The most {@link #bytesAllocated()} has been. */
    long peakBytesAllocated();

    /** What tensors over this memory tell ONNX Runtime; owned by this object and closed with it. */
    MemoryInfo memoryInfo();

    /** {@code {free, total}} bytes of the device as its driver reports them; empty for host memory. */
    Optional<long[]> deviceMemoryInfo();

    /**
     * A host buffer of {@code bytes}, zero-filled, to upload from or download to: page-locked on a GPU, so its
     * transfers run at full speed without an extra copy. It lives until this object is closed; make few and reuse
     * them.
     */
    MemorySegment allocateStaging(long bytes);

    @Override
    void close();
}
