package dev.kvq.runtime.onnx.nativeapi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assumptions.assumeFalse;

import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtSession;
import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import dev.kvq.generate.spi.StoredRun;
import dev.kvq.generate.spi.StoredRun.GroupAxis;
import dev.kvq.spi.AffineForm;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Registration of kvq's attention operators: on a machine without CUDA's driver, asking for the CUDA kernel is
 * {@code UNSUPPORTED} (which the decoder answers with the dequantizing graph), and nothing is left registered.
 * That the registered operators compute what the model computes is {@code FusedAttentionTest}'s.
 */
class CustomOpsTest {
    private static final StoredRun K4 = new StoredRun(0, 2, 4, GroupAxis.TOKEN, 32, AffineForm.ZERO_POINT, -8, true);

    @Test
    void withoutCudasDriverTheCudaOperatorIsUnsupported() throws OrtException {
        boolean driver;
        try {
            CudaDriver.get();
            driver = true;
        } catch (KvqException e) {
            driver = false;
        }
        assumeFalse(driver, "this machine has CUDA's driver (libcuda.so.1): the kernel would load");
        AttentionSpec spec = new AttentionSpec("Attention0", 2, 2, 64, 0.125f, false, List.of(K4), List.of(K4), 0, 1);
        try (OrtSession.SessionOptions options = new OrtSession.SessionOptions()) {
            KvqException e = assertThrows(KvqException.class, () -> CustomOps.register(options, "dev.kvq.test",
                    List.of(spec), new CustomOps.Device(true, 0)));
            assertEquals(ErrorCode.UNSUPPORTED, e.code(), e.getMessage());
        }
    }

    @Test
    void anEmptyListIsRefused() throws OrtException {
        try (OrtSession.SessionOptions options = new OrtSession.SessionOptions()) {
            assertThrows(KvqException.class, () -> CustomOps.register(options, "dev.kvq.test", List.of(),
                    CustomOps.Device.CPU));
        }
    }
}
