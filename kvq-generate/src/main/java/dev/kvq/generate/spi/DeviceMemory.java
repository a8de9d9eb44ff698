package dev.kvq.generate.spi;

import java.lang.foreign.MemorySegment;
import java.util.OptionalLong;

/**
 * Memory where a runtime runs its model (GPU memory on CUDA, native memory on the CPU), as opaque addresses, and
 * the few transfers kvq's device-resident cache needs. Owned by the decoder that hands it out; everything it
 * allocated is freed when that decoder closes.
 */
public interface DeviceMemory {
    /**
     * Allocates {@code bytes} (zero-filled) that will hold {@code element}s and returns its address. Offsets, pitches
     * and sizes of transfers into it are multiples of the element's size. Runtimes that address memory by byte ignore
     * the element; others (PyTorch tensors) allocate typed memory, since they cannot reinterpret bytes.
     */
    long allocate(long bytes, Element element);

    void free(long address);

    /**
     * Copies {@code bytes} from host memory to {@code dst}. The copy may still be under way when the call returns
     * (from {@link #staging} memory on CUDA): leave the source unchanged until {@link #synchronize()}. The runtime
     * synchronizes before a step reads the memory.
     */
    void upload(MemorySegment src, long srcOffset, long dst, long bytes);

    /**
     * Copies {@code height} rows of {@code width} bytes from host memory to the device, each side with its pitch; like
     * {@link #upload}, it may still be reading its source when it returns.
     */
    void upload2d(MemorySegment src, long srcOffset, long srcPitch, long dst, long dstPitch, long width, long height);

    /**
     * Copies every piece of {@code batch} from {@code src} to the device, like {@link #upload2d} each (and like it,
     * may still be reading {@code src} when it returns). A runtime may move them in one go: on CUDA, pieces of
     * {@link #staging} memory take one kernel launch however many there are. By default, one upload per piece.
     */
    default void uploadBatch(MemorySegment src, UploadBatch batch) {
        for (int i = 0; i < batch.size(); i++) {
            long width = batch.width(i);
            upload2d(src, batch.srcOffset(i), width, batch.dst(i), batch.dstPitch(i), width, batch.rows(i));
        }
    }

    /** Copies {@code bytes} within device memory. */
    void copy(long src, long dst, long bytes);

    /**
     * Copies {@code height} rows of {@code width} bytes within device memory, each side with its pitch; the two
     * regions must not overlap. Used when a batch's layout changes (a sequence joins or leaves).
     */
    void copy2d(long src, long srcPitch, long dst, long dstPitch, long width, long height);

    /** Waits until every upload and copy issued so far is done, so their sources may be written again. */
    void synchronize();

    /** Host memory that uploads are fast from (pinned on CUDA), freed with this memory. */
    MemorySegment staging(long bytes);

    void freeStaging(MemorySegment staging);

    /** Bytes this memory holds now, exactly. */
    long bytesAllocated();

    /** The most bytes it held at once. */
    long peakBytesAllocated();

    /** Bytes in use on the whole device, where the runtime can tell (CUDA); by default it cannot. */
    default OptionalLong deviceBytesInUse() {
        return OptionalLong.empty();
    }

    /** What an allocation holds. */
    enum Element {
        BYTE(1), FLOAT16(2), FLOAT32(4);

        private final int size;

        Element(int size) {
            this.size = size;
        }

        /** Bytes of one element. */
        public int size() {
            return size;
        }
    }
}
