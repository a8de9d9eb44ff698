package dev.kvq.testkit;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Assumptions;

/**
 * The read-only {@code ../shared} folder beside the repository (models, goldens, data). Tests that need it
 * call {@link #require(String)}, which skips the test with a message naming the missing path when it is
 * absent (a fresh clone), so such tests never pass silently. A missing golden fails instead of skipping where the
 * goldens are expected: when {@code kvq.golden.dir} names a directory, or on CI ({@code CI=true}).
 */
public final class Shared {
    private Shared() {
    }

    /** {@code kvq.shared.dir}, else {@code ../shared} from the repository root found above the working directory. */
    public static Path root() {
        String prop = System.getProperty("kvq.shared.dir");
        if (prop != null && !prop.isBlank()) {
            return Path.of(prop).toAbsolutePath().normalize();
        }
        Path dir = Path.of("").toAbsolutePath();
        for (Path p = dir; p != null; p = p.getParent()) {
            if (Files.isRegularFile(p.resolve(".ci/run")) || Files.isDirectory(p.resolve(".git"))) {
                return p.resolveSibling("shared").normalize();
            }
        }
        return dir.resolveSibling("shared").normalize();
    }

    /** The golden directory: {@code kvq.golden.dir}, else {@code <shared>/golden}. */
    public static Path goldenDir() {
        String prop = System.getProperty("kvq.golden.dir");
        if (prop != null && !prop.isBlank()) {
            return Path.of(prop).toAbsolutePath().normalize();
        }
        return root().resolve("golden");
    }

    /** {@code <shared>/relative}, skipping the calling test when it does not exist. */
    public static Path require(String relative) {
        Path p = root().resolve(relative);
        Assumptions.assumeTrue(Files.exists(p), () -> "skipped: " + p + " is missing; this test needs the shared "
                + "folder beside the repository (set -Dkvq.shared.dir=... to point elsewhere)");
        return p;
    }

    /**
     * A file of the golden directory. When it does not exist the calling test fails if {@link #goldensExpected()},
     * and is skipped otherwise.
     */
    public static Path requireGolden(String name) {
        Path p = goldenDir().resolve(name);
        if (!Files.exists(p) && goldensExpected()) {
            throw new AssertionError("golden file " + p + " is missing, and the goldens are expected here ("
                    + (named() ? "-Dkvq.golden.dir names " + goldenDir() : "CI=true") + "); point -Dkvq.golden.dir at a "
                    + "directory with manifest.json and the .safetensors files");
        }
        Assumptions.assumeTrue(Files.exists(p), () -> "skipped: golden file " + p + " is missing (set "
                + "-Dkvq.golden.dir=... to a directory with manifest.json and the .safetensors files)");
        return p;
    }

    /** True when a missing golden is a failure: a directory is named ({@code kvq.golden.dir}) or CI runs. */
    public static boolean goldensExpected() {
        return named() || "true".equalsIgnoreCase(System.getenv("CI"));
    }

    private static boolean named() {
        String prop = System.getProperty("kvq.golden.dir");
        return prop != null && !prop.isBlank();
    }
}
