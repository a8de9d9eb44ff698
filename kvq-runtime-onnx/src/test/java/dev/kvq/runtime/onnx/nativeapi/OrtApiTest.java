package dev.kvq.runtime.onnx.nativeapi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.onnxruntime.OrtEnvironment;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.lang.foreign.MemorySegment;
import org.junit.jupiter.api.Test;

class OrtApiTest {
    @Test
    void reachesTheRuntimeThatOnnxRuntimeJavaLoaded() {
        assertEquals(OrtEnvironment.getEnvironment().getVersion(), OrtApi.get().version());
    }

    @Test
    void aStatusBecomesAKvqExceptionNamingTheFunction() {
        OrtApi api = OrtApi.get();
        MemorySegment status = api.createStatus(2, "it went wrong");
        assertEquals(2, api.errorCode(status));
        assertEquals("it went wrong", api.errorMessage(status));

        KvqException e = assertThrows(KvqException.class, () -> api.check("SomeFunction", status));
        assertEquals(ErrorCode.RUNTIME_FAILURE, e.code());
        assertEquals("SomeFunction: it went wrong", e.getMessage());
        api.check("NoError", MemorySegment.NULL);
    }

    @Test
    void memoryInfoForCudaCanBeDescribedWithoutAGpu() {
        try (MemoryInfo cuda = MemoryInfo.cuda(1); MemoryInfo cpu = MemoryInfo.cpu()) {
            assertTrue(cuda.isCuda());
            assertEquals(1, cuda.deviceId());
            assertEquals("cpu", cpu.toString());
        }
    }
}
