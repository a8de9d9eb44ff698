package dev.kvq.runtime.onnx.nativeapi;

import dev.kvq.ErrorCode;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

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

    private final CudaModule module;
    private final CudaDriver driver;
    private final MemorySegment function;
    private final Arena arena = Arena.ofShared();
    /** {@code void* params[2]} pointing at the two arguments below. */
    private final MemorySegment params;
    private final MemorySegment tableArgument;
    private final MemorySegment piecesArgument;

    /** Loads the kernel on device {@code ordinal}; {@link ErrorCode#UNSUPPORTED} if the driver cannot. */
    ScatterKernel(int ordinal) {
        this.module = new CudaModule(ordinal, PTX_RESOURCE);
        this.driver = module.driver();
        this.function = module.function(FUNCTION);
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
            module.makeCurrent();
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
}
