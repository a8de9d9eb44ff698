package dev.kvq.runtime.onnx.nativeapi;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

/** The shipped PTX of {@link ScatterKernel} is what its CUDA source compiles to, and loadable by older drivers. */
class ScatterKernelSourceTest {
    private static final Path ROOT = Path.of("..").toAbsolutePath().normalize();

    @Test
    void theResourceDeclaresTheKernelForDriversOfCuda11AndLater() {
        String ptx = CudaModule.source(ScatterKernel.PTX_RESOURCE);
        assertTrue(ptx.startsWith(".version 7.0\n"), "ISA version: " + ptx.lines().findFirst().orElse(""));
        assertTrue(ptx.contains(".visible .entry kvq_scatter("), "the entry point");
        // source address, destination, destination pitch, width, rows, source pitch: 48 bytes a piece
        assertTrue(ptx.contains(", " + ScatterKernel.WORDS_PER_PIECE * Long.BYTES + ";"), "the piece stride");
    }

    @Test
    void theResourceIsWhatTheSourceCompilesTo() throws IOException, InterruptedException {
        Path script = ROOT.resolve("tools/build_kernels.sh");
        assumeTrue(Files.isRegularFile(script), "tools/build_kernels.sh is not beside this module");
        assumeTrue(onPath("nvcc") && onPath("ptxas"), "nvcc and ptxas (CUDA's compiler) are not on PATH; the check "
                + "that the shipped PTX matches src/main/cuda is skipped");
        Process p = new ProcessBuilder("bash", script.toString(), "--check").redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "build_kernels.sh --check did not finish");
        assertEquals(0, p.exitValue(), "run tools/build_kernels.sh after changing src/main/cuda: " + out);
    }

    private static boolean onPath(String program) {
        String path = System.getenv("PATH");
        if (path == null) {
            return false;
        }
        for (String dir : path.split(java.io.File.pathSeparator)) {
            if (Files.isExecutable(Path.of(dir, program))) {
                return true;
            }
        }
        return false;
    }
}
