package dev.kvq.runtime.onnx.nativeapi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Optional;
import org.junit.jupiter.api.Test;

class HostMemoryTest extends DeviceMemoryContract {
    @Override
    DeviceMemory create() {
        return new HostMemory();
    }

    @Override
    void checkDeviceMemoryInfo(Optional<long[]> info) {
        assertTrue(info.isEmpty());
    }

    @Override
    String expectedMemoryInfoName() {
        return "Cpu";
    }

    @Test
    void blocksCanBeReadAsSegments() {
        try (HostMemory memory = new HostMemory()) {
            long block = memory.allocate(16);
            MemorySegment view = memory.segment(block + 8, 8);
            view.set(ValueLayout.JAVA_LONG_UNALIGNED, 0, 42L);
            MemorySegment back = MemorySegment.ofArray(new long[2]);
            memory.download(block, back, 0, 16);
            assertEquals(42L, back.getAtIndex(ValueLayout.JAVA_LONG, 1));
            assertEquals(ErrorCode.ILLEGAL_ARGUMENT,
                    assertThrows(KvqException.class, () -> memory.segment(block + 8, 9)).code());
        }
    }

    @Test
    void forDeviceParsesDeviceNames() {
        try (DeviceMemory memory = DeviceMemory.forDevice("cpu")) {
            assertInstanceOf(HostMemory.class, memory);
            assertEquals("cpu", memory.device());
        }
        assertEquals(ErrorCode.INVALID_CONFIG,
                assertThrows(KvqException.class, () -> DeviceMemory.forDevice("gpu")).code());
        assertEquals(ErrorCode.INVALID_CONFIG,
                assertThrows(KvqException.class, () -> DeviceMemory.forDevice("cuda:x")).code());
    }
}
