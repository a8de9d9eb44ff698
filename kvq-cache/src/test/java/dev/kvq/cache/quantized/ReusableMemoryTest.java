package dev.kvq.cache.quantized;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;

class ReusableMemoryTest {
    @Test
    void slicesAreZeroedAlignedAndReusedAfterTheRoundThatGrewTheSegment() {
        try (ReusableMemory memory = new ReusableMemory()) {
            memory.reset();
            // the first round does not fit (nothing is allocated yet): served from the overflow
            MemorySegment a = memory.allocate(100, 8);
            MemorySegment b = memory.allocate(40, 16);
            assertEquals(100, a.byteSize());
            assertEquals(0, b.address() % 16);
            memory.reset();
            MemorySegment a2 = memory.allocate(100, 8);
            MemorySegment b2 = memory.allocate(40, 16);
            a2.fill((byte) 7);
            b2.fill((byte) 9);
            assertEquals(0, b2.address() % 16);
            assertFalse(a2.asOverlappingSlice(b2).isPresent(), "slices of one round overlap");
            memory.reset();
            MemorySegment a3 = memory.allocate(100, 8);
            // the same memory again, zeroed
            assertEquals(a2.address(), a3.address());
            for (long i = 0; i < a3.byteSize(); i++) {
                assertEquals(0, a3.get(ValueLayout.JAVA_BYTE, i));
            }
        }
    }

    @Test
    void aRoundLargerThanTheSegmentStillGetsAllItAsksForAndTheNextFits() {
        try (ReusableMemory memory = new ReusableMemory()) {
            memory.reset();
            memory.allocate(64, 8);
            memory.reset();
            MemorySegment small = memory.allocate(64, 8);
            MemorySegment big = memory.allocate(4096, 64);
            assertEquals(4096, big.byteSize());
            assertFalse(small.asOverlappingSlice(big).isPresent());
            memory.reset();
            MemorySegment first = memory.allocate(64, 8);
            MemorySegment second = memory.allocate(4096, 64);
            assertTrue(second.address() > first.address() && second.address() - first.address() < 4096,
                    "after growing, both requests lie in one segment");
        }
    }
}
