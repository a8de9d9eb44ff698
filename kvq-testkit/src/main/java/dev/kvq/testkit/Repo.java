package dev.kvq.testkit;

import java.nio.file.Files;
import java.nio.file.Path;

/** Files of the repository itself (the demo model), which every clone has. */
public final class Repo {
    private Repo() {
    }

    /** The repository root: {@code kvq.repo.dir}, else the first directory above the working directory with {@code .ci}. */
    public static Path root() {
        String prop = System.getProperty("kvq.repo.dir");
        if (prop != null && !prop.isBlank()) {
            return Path.of(prop).toAbsolutePath().normalize();
        }
        for (Path p = Path.of("").toAbsolutePath(); p != null; p = p.getParent()) {
            if (Files.isDirectory(p.resolve("models/kvq-demo-char"))) {
                return p;
            }
        }
        throw new IllegalStateException("cannot find the repository root above " + Path.of("").toAbsolutePath());
    }

    /** kvq's demo model, committed to the repository. */
    public static Path demoModel() {
        Path p = root().resolve("models/kvq-demo-char");
        if (!Files.isDirectory(p)) {
            throw new IllegalStateException("the demo model is missing at " + p + "; it is part of the repository");
        }
        return p;
    }

    /** A text of the demo model's vocabulary, committed beside it for tests and examples. */
    public static Path demoText() {
        return root().resolve("models/kvq-demo-char/sample.txt");
    }
}
