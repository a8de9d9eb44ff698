package dev.kvq.runtime.onnx.nativeapi;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;

/**
 * One of kvq's PTX resources loaded by CUDA's driver on one device, in the device's primary context (the one CUDA's
 * runtime, and so ONNX Runtime, works in). The module lives as long as that context.
 */
@SuppressWarnings("restricted") // native calls are what this class is for
final class CudaModule {
    private final CudaDriver driver;
    private final MemorySegment context;
    private final MemorySegment module;

    /** Loads resource {@code ptx} of this package on device {@code ordinal}; {@code UNSUPPORTED} if the driver cannot. */
    CudaModule(int ordinal, String ptx) {
        this.driver = CudaDriver.get();
        try (Arena call = Arena.ofConfined()) {
            MemorySegment device = call.allocate(JAVA_INT);
            driver.check("cuDeviceGet", (int) driver.deviceGet.invokeExact(device, ordinal));
            MemorySegment out = call.allocate(ADDRESS);
            driver.check("cuDevicePrimaryCtxRetain", (int) driver.primaryCtxRetain.invokeExact(out,
                    device.get(JAVA_INT, 0)));
            context = out.get(ADDRESS, 0);
            makeCurrent();
            driver.check("cuModuleLoadData", (int) driver.moduleLoadData.invokeExact(out,
                    call.allocateFrom(source(ptx))));
            module = out.get(ADDRESS, 0);
        } catch (KvqException e) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "cannot load kvq's CUDA kernels (" + ptx + "): "
                    + e.getMessage(), e);
        } catch (Throwable t) {
            throw OrtApi.unexpected("loading " + ptx, t);
        }
    }

    CudaDriver driver() {
        return driver;
    }

    /** The kernel {@code name} of this module. */
    MemorySegment function(String name) {
        try (Arena call = Arena.ofConfined()) {
            MemorySegment out = call.allocate(ADDRESS);
            driver.check("cuModuleGetFunction(" + name + ")", (int) driver.moduleGetFunction.invokeExact(out, module,
                    call.allocateFrom(name)));
            return out.get(ADDRESS, 0);
        } catch (KvqException e) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "cannot load kvq's CUDA kernel " + name + ": "
                    + e.getMessage(), e);
        } catch (Throwable t) {
            throw OrtApi.unexpected("cuModuleGetFunction", t);
        }
    }

    /** Makes the primary context current on this thread, as the driver API needs before a launch. */
    void makeCurrent() throws Throwable {
        driver.check("cuCtxSetCurrent", (int) driver.ctxSetCurrent.invokeExact(context));
    }

    /** The text of PTX resource {@code name} of this package. */
    static String source(String name) {
        try (InputStream in = CudaModule.class.getResourceAsStream(name)) {
            if (in == null) {
                throw new KvqException(ErrorCode.UNSUPPORTED, "the resource " + name + " is missing");
            }
            return new String(in.readAllBytes(), StandardCharsets.US_ASCII);
        } catch (IOException e) {
            throw new KvqException(ErrorCode.IO, "cannot read " + name + ": " + e.getMessage(), e);
        }
    }
}
