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
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * kvq's kernel {@code kvq_scatter} ({@code src/main/cuda/scatter.cu}, shipped as PTX that the driver compiles for the
 * GPU at hand) on one device: it copies many small pieces from page-locked host memory to device memory in one
 * launch. Pieces are described by a table in page-locked memory, {@link #WORDS_PER_PIECE} 64-bit words each: source
 * address, destination address, destination pitch, row width, rows, source pitch. With unified addressing (every
 * 64-bit CUDA platform) the kernel reads page-locked host memory at its host address, so neither the pieces nor the
 * table are copied first. Not thread-safe: its owner serializes launches.
 */
@SuppressWarnings("restricted") // native calls are what this class is for
final class ScatterKernel implements AutoCloseable {
    static final int WORDS_PER_PIECE = 6;
    static final String PTX_RESOURCE = "scatter.ptx";
    private static final String FUNCTION = "kvq_scatter";
    private static final int THREADS = 128;
    private static final int MOST_BLOCKS = 4096;

    private final CudaDriver driver;
    private final MemorySegment context;
    private final MemorySegment function;
    private final Arena arena = Arena.ofShared();
    /** {@code void* params[2]} pointing at the two arguments below. */
    private final MemorySegment params;
    private final MemorySegment tableArgument;
    private final MemorySegment piecesArgument;

    /** Loads the kernel on device {@code ordinal}; {@link ErrorCode#UNSUPPORTED} if the driver cannot. */
    ScatterKernel(int ordinal) {
        this.driver = CudaDriver.get();
        try (Arena call = Arena.ofConfined()) {
            MemorySegment device = call.allocate(JAVA_INT);
            driver.check("cuDeviceGet", (int) driver.deviceGet.invokeExact(device, ordinal));
            MemorySegment out = call.allocate(ADDRESS);
            driver.check("cuDevicePrimaryCtxRetain", (int) driver.primaryCtxRetain.invokeExact(out,
                    device.get(JAVA_INT, 0)));
            context = out.get(ADDRESS, 0);
            makeCurrent();
            driver.check("cuModuleLoadData", (int) driver.moduleLoadData.invokeExact(out, call.allocateFrom(ptx())));
            MemorySegment module = out.get(ADDRESS, 0);
            driver.check("cuModuleGetFunction", (int) driver.moduleGetFunction.invokeExact(out, module,
                    call.allocateFrom(FUNCTION)));
            function = out.get(ADDRESS, 0);
        } catch (KvqException e) {
            throw new KvqException(ErrorCode.UNSUPPORTED, "cannot load kvq's CUDA kernel: " + e.getMessage(), e);
        } catch (Throwable t) {
            throw OrtApi.unexpected("loading " + FUNCTION, t);
        }
        tableArgument = arena.allocate(JAVA_LONG);
        piecesArgument = arena.allocate(JAVA_INT);
        params = arena.allocate(ADDRESS, 2);
        params.setAtIndex(ADDRESS, 0, tableArgument);
        params.setAtIndex(ADDRESS, 1, piecesArgument);
    }

    /**
     * Queues the copies of {@code pieces} pieces described at {@code table} (page-locked) on the default stream; the
     * table and the sources must stay as they are until the stream has run it.
     */
    void launch(MemorySegment table, int pieces) {
        if (pieces == 0) {
            return;
        }
        tableArgument.set(JAVA_LONG, 0, table.address());
        piecesArgument.set(JAVA_INT, 0, pieces);
        int blocks = Math.min(pieces, MOST_BLOCKS);
        try {
            makeCurrent();
            driver.check("cuLaunchKernel(" + FUNCTION + ")", (int) driver.launchKernel.invokeExact(function, blocks, 1,
                    1, THREADS, 1, 1, 0, MemorySegment.NULL, params, MemorySegment.NULL));
        } catch (Throwable t) {
            throw OrtApi.unexpected("cuLaunchKernel", t);
        }
    }

    @Override
    public void close() {
        arena.close(); // the module lives as long as the device's primary context
    }

    /** The primary context is what CUDA's runtime (and so ONNX Runtime) uses; the driver API needs it current. */
    private void makeCurrent() throws Throwable {
        driver.check("cuCtxSetCurrent", (int) driver.ctxSetCurrent.invokeExact(context));
    }

    private static String ptx() {
        try (InputStream in = ScatterKernel.class.getResourceAsStream(PTX_RESOURCE)) {
            if (in == null) {
                throw new KvqException(ErrorCode.UNSUPPORTED, "the resource " + PTX_RESOURCE + " is missing");
            }
            return new String(in.readAllBytes(), StandardCharsets.US_ASCII);
        } catch (IOException e) {
            throw new KvqException(ErrorCode.IO, "cannot read " + PTX_RESOURCE + ": " + e.getMessage(), e);
        }
    }
}
