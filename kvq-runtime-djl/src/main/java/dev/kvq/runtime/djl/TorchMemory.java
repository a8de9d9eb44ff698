package dev.kvq.runtime.djl;

import ai.djl.Device;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.ndarray.types.SparseFormat;
import ai.djl.pytorch.engine.PtNDArray;
import ai.djl.pytorch.engine.PtNDManager;
import ai.djl.pytorch.engine.PtSymbolBlock;
import ai.djl.pytorch.jni.IValue;
import ai.djl.pytorch.jni.IValueUtils;
import ai.djl.pytorch.jni.JniUtils;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.spi.DeviceMemory;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * kvq's device memory as PyTorch tensors on the model's device: each allocation is a tensor of its element type
 * (uint8 codes, float16 or float32 parameters and values; TorchScript cannot reinterpret bytes), its address the
 * tensor's slot in a list (high bits) and a byte offset (low bits), which the TorchScript program gets as an element
 * offset. Uploads are queued with their bytes, one queue per element type, and applied by the program in one call: at
 * the next step, or at once when a copy or a free must see them. No native binding of kvq's own: DJL hands tensor
 * handles to TorchScript without copying.
 */
final class TorchMemory implements DeviceMemory, AutoCloseable {
    /** Byte offsets within one allocation take the low bits of an address. */
    static final int OFFSET_BITS = 40;
    static final long OFFSET_MASK = (1L << OFFSET_BITS) - 1;

    private final PtSymbolBlock block;
    private final PtNDManager manager;
    /** Where queued bytes become a tensor: host memory, whatever the model's device. */
    private final PtNDManager host;
    private final Device device;
    private final Arena arena = Arena.ofShared();
    private final List<PtNDArray> slots = new ArrayList<>();
    private final List<Long> sizes = new ArrayList<>();
    private final List<Element> elements = new ArrayList<>();
    private IValue slotList;
    /** Per element type, host bytes queued for upload. */
    private final MemorySegment[] queued = {MemorySegment.NULL, MemorySegment.NULL, MemorySegment.NULL};
    private final long[] queuedBytes = new long[3];
    private final PtNDArray[] emptyHost = new PtNDArray[3];
    private long[] transfers = new long[64];
    private int transferInts;
    private PtNDArray empty;
    private long allocated;
    private long peak;

    TorchMemory(PtSymbolBlock block, PtNDManager manager, Device device) {
        this.block = block;
        this.manager = manager;
        this.host = (PtNDManager) manager.newSubManager(Device.cpu());
        this.device = device;
    }

    @Override
    public long allocate(long bytes, Element element) {
        if (bytes > OFFSET_MASK || bytes % element.size() != 0) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "a device allocation of " + bytes + " bytes of " + element
                    + " is not a whole number of elements within this runtime's limit of " + OFFSET_MASK + " bytes");
        }
        PtNDArray tensor = JniUtils.createZerosNdArray(manager, new Shape(bytes / element.size()), type(element),
                device, SparseFormat.DENSE);
        int slot = slots.indexOf(null);
        if (slot < 0) {
            slot = slots.size();
            slots.add(tensor);
            sizes.add(bytes);
            elements.add(element);
        } else {
            slots.set(slot, tensor);
            sizes.set(slot, bytes);
            elements.set(slot, element);
        }
        allocated += bytes;
        peak = Math.max(peak, allocated);
        invalidateSlotList();
        return ((long) slot + 1) << OFFSET_BITS;
    }

    @Override
    public void free(long address) {
        flush();
        int slot = slot(address);
        slots.get(slot).close();
        slots.set(slot, null);
        allocated -= sizes.get(slot);
        sizes.set(slot, 0L);
        invalidateSlotList();
    }

    @Override
    public void upload(MemorySegment src, long srcOffset, long dst, long bytes) {
        upload2d(src, srcOffset, bytes, dst, bytes, bytes, 1);
    }

    @Override
    public void upload2d(MemorySegment src, long srcOffset, long srcPitch, long dst, long dstPitch, long width,
                         long height) {
        int slot = slot(dst);
        long offset = dst & OFFSET_MASK;
        long end = offset + (height - 1) * dstPitch + width;
        Element element = elements.get(slot);
        int size = element.size();
        if (end > sizes.get(slot) || width > dstPitch && height > 1 || offset % size != 0 || dstPitch % size != 0
                || width % size != 0) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "an upload of " + height + " rows of " + width
                    + " bytes at offset " + offset + " (pitch " + dstPitch + ") does not fit its allocation of "
                    + sizes.get(slot) + " bytes of " + element);
        }
        long bytes = width * height;
        int queue = element.ordinal();
        MemorySegment into = reserveQueue(queue, bytes);
        for (long r = 0; r < height; r++) {
            MemorySegment.copy(src, srcOffset + r * srcPitch, into, r * width, width);
        }
        queue(queue, slot + 1, offset / size, dstPitch / size, width / size, height, queuedBytes[queue] / size);
        queuedBytes[queue] += bytes;
    }

    @Override
    public void copy(long src, long dst, long bytes) {
        int to = slot(dst);
        int size = elements.get(to).size();
        queue(3, to + 1, (dst & OFFSET_MASK) / size, bytes / size, slot(src) + 1, (src & OFFSET_MASK) / size, 0);
        flush();
    }

    @Override
    public void copy2d(long src, long srcPitch, long dst, long dstPitch, long width, long height) {
        int to = slot(dst);
        int from = slot(src);
        int size = elements.get(to).size();
        if (elements.get(from) != elements.get(to) || srcPitch % size != 0 || dstPitch % size != 0
                || width % size != 0 || (src & OFFSET_MASK) % size != 0 || (dst & OFFSET_MASK) % size != 0
                || width > srcPitch || width > dstPitch) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "a device copy of " + height + " rows of " + width
                    + " bytes needs both sides of one element type, whole elements and pitches of at least a row");
        }
        if (width == 0 || height == 0) {
            return;
        }
        if ((src & OFFSET_MASK) + (height - 1) * srcPitch + width > sizes.get(from)
                || (dst & OFFSET_MASK) + (height - 1) * dstPitch + width > sizes.get(to)) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "a device copy of " + height + " rows of " + width
                    + " bytes does not fit its allocations");
        }
        queue(4, to + 1, (dst & OFFSET_MASK) / size, dstPitch / size, width / size, height, 0);
        queue(5, from + 1, (src & OFFSET_MASK) / size, srcPitch / size, 0, 0, 0);
        flush();
    }

    /** Nothing to wait for: an upload copies its source into the queue before it returns. */
    @Override
    public void synchronize() {
    }

    @Override
    public MemorySegment staging(long bytes) {
        return arena.allocate(Math.max(1, bytes), 64);
    }

    @Override
    public void freeStaging(MemorySegment staging) {
        // host staging lives until the memory closes; the store asks rarely (it grows geometrically)
    }

    @Override
    public long bytesAllocated() {
        return allocated;
    }

    @Override
    public long peakBytesAllocated() {
        return peak;
    }

    /**
     * The list of allocations the program indexes by an address's high bits: an empty tensor at 0 (address 0, a
     * buffer not allocated yet, read as empty), then slot {@code s} at {@code s + 1}. Made again only when allocations
     * change.
     */
    IValue slotList() {
        if (slotList == null) {
            PtNDArray[] tensors = new PtNDArray[slots.size() + 1];
            tensors[0] = emptyTensor();
            for (int i = 1; i < tensors.length; i++) {
                tensors[i] = slots.get(i - 1) != null ? slots.get(i - 1) : emptyTensor();
            }
            slotList = IValue.listFrom(tensors);
        }
        return slotList;
    }

    /** Where {@code address} lies for the program: its index in {@link #slotList()} and its element offset. */
    void reference(long address, long[] into, int at) {
        long index = address >>> OFFSET_BITS;
        into[at] = index;
        into[at + 1] = index == 0 ? 0 : (address & OFFSET_MASK) / elements.get((int) index - 1).size();
    }

    /** The queued host bytes as CPU tensors of each element type (the caller closes them) and the transfers. */
    Pending takePending() {
        PtNDArray[] staging = new PtNDArray[3];
        for (Element e : Element.values()) {
            int q = e.ordinal();
            if (queuedBytes[q] == 0) {
                if (emptyHost[q] == null) {
                    emptyHost[q] = JniUtils.createZerosNdArray(host, new Shape(0), type(e), Device.cpu(),
                            SparseFormat.DENSE);
                }
                staging[q] = emptyHost[q];
            } else {
                ByteBuffer bytes = queued[q].asSlice(0, queuedBytes[q]).asByteBuffer().order(ByteOrder.nativeOrder());
                staging[q] = (PtNDArray) host.create(bytes, new Shape(queuedBytes[q] / e.size()), type(e));
            }
            queuedBytes[q] = 0;
        }
        long[] ints = Arrays.copyOf(transfers, transferInts);
        transferInts = 0;
        return new Pending(staging, ints, emptyHost);
    }

    /** Applies queued transfers now. */
    void flush() {
        if (transferInts == 0) {
            return;
        }
        DjlDecoder.plainExecutor();
        Pending p = takePending();
        IValue stagingValue = IValue.listFrom(p.staging());
        IValue list = IValue.listFrom(p.transfers());
        try {
            IValueUtils.runMethod(block, QuantizedPastProgram.TRANSFER, slotList(), stagingValue, list).close();
        } finally {
            stagingValue.close();
            list.close();
            p.close();
        }
    }

    private MemorySegment reserveQueue(int q, long bytes) {
        long need = queuedBytes[q] + bytes;
        if (queued[q].byteSize() < need) {
            MemorySegment grown = arena.allocate(Math.max(need, queued[q].byteSize() * 2), 64);
            if (queuedBytes[q] > 0) {
                MemorySegment.copy(queued[q], 0, grown, 0, queuedBytes[q]);
            }
            queued[q] = grown;
        }
        return queued[q].asSlice(queuedBytes[q], bytes);
    }

    private static DataType type(Element element) {
        return switch (element) {
            case BYTE -> DataType.UINT8;
            case FLOAT16 -> DataType.FLOAT16;
            case FLOAT32 -> DataType.FLOAT32;
        };
    }

    private void queue(long kind, long slot, long offset, long a, long b, long c, long d) {
        if (transferInts + QuantizedPastProgram.TRANSFER_INTS > transfers.length) {
            transfers = Arrays.copyOf(transfers, transfers.length * 2);
        }
        long[] t = transfers;
        int i = transferInts;
        t[i] = kind;
        t[i + 1] = slot;
        t[i + 2] = offset;
        t[i + 3] = a;
        t[i + 4] = b;
        t[i + 5] = c;
        t[i + 6] = d;
        transferInts += QuantizedPastProgram.TRANSFER_INTS;
    }

    private int slot(long address) {
        int slot = (int) (address >>> OFFSET_BITS) - 1;
        if (slot < 0 || slot >= slots.size() || slots.get(slot) == null) {
            throw new KvqException(ErrorCode.ILLEGAL_ARGUMENT, "address " + Long.toHexString(address) + " is not one "
                    + "this memory allocated");
        }
        return slot;
    }

    private PtNDArray emptyTensor() {
        if (empty == null) {
            empty = JniUtils.createZerosNdArray(manager, new Shape(0), DataType.UINT8, device, SparseFormat.DENSE);
        }
        return empty;
    }

    private void invalidateSlotList() {
        if (slotList != null) {
            slotList.close();
            slotList = null;
        }
    }

    @Override
    public void close() {
        invalidateSlotList();
        for (PtNDArray t : slots) {
            if (t != null) {
                t.close();
            }
        }
        slots.clear();
        allocated = 0;
        if (empty != null) {
            empty.close();
        }
        for (PtNDArray e : emptyHost) {
            if (e != null) {
                e.close();
            }
        }
        host.close();
        arena.close();
    }

    /** Queued host bytes per element type and the transfers that read them. */
    record Pending(PtNDArray[] staging, long[] transfers, PtNDArray[] kept) implements AutoCloseable {
        @Override
        public void close() {
            for (int i = 0; i < staging.length; i++) {
                if (staging[i] != kept[i]) {
                    staging[i].close();
                }
            }
        }
    }
}
