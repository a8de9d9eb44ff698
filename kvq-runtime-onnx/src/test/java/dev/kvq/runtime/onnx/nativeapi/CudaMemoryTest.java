package dev.kvq.runtime.onnx.nativeapi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;

/** The host tests on GPU 0; needs a GPU and CUDA's runtime, so it runs only with {@code -Dkvq.cuda=true}. */
@EnabledIfSystemProperty(named = "kvq.cuda", matches = "true")
class CudaMemoryTest extends DeviceMemoryContract {
    @Override
    DeviceMemory create() {
        return new CudaMemory(0);
    }

    @Override
    void checkDeviceMemoryInfo(Optional<long[]> info) {
        long[] freeAndTotal = info.orElseThrow();
        assertTrue(freeAndTotal[0] > 0 && freeAndTotal[0] <= freeAndTotal[1], freeAndTotal[0] + " of "
                + freeAndTotal[1]);
    }

    @Override
    String expectedMemoryInfoName() {
        return "Cuda";
    }

    @Test
    void forDeviceGivesCudaMemory() {
        try (DeviceMemory memory = DeviceMemory.forDevice("cuda:0")) {
            assertInstanceOf(CudaMemory.class, memory);
            assertEquals("cuda:0", memory.device());
        }
    }

    @Test
    void aMissingDeviceIsUnsupported() {
        assertEquals(ErrorCode.UNSUPPORTED, assertThrows(KvqException.class, () -> new CudaMemory(1000)).code());
    }
}
