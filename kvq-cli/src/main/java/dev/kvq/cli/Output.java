package dev.kvq.cli;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.FileSystemException;
import java.nio.file.FileSystems;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.PathMatcher;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;

/**
 * Where a command writes its results, claimed before any work so that no result is ever destroyed:
 * <ul>
 *   <li>the directory is created if needed and must be writable;</li>
 *   <li>it is locked against other kvq runs by a file {@value #LOCK} holding the process id (a lock whose process is
 *       gone is taken over);</li>
 *   <li>it must not hold results of an earlier run (files matching the command's result names) unless {@code --force};
 *   </li>
 *   <li>results are written into a staging folder inside it and moved into place by atomic renames when the command is
 *       done, the main file (the first name) last; with {@code --force}, earlier results this run did not write are
 *       removed, so no stale file of another run stays beside the new ones.</li>
 * </ul>
 * Closing releases the lock, removes the staging folder and, when nothing was published, the directories it created.
 */
final class Output implements AutoCloseable {
    static final String LOCK = ".kvq-lock";
    private static final String STAGING = ".kvq-staging-";

    private final String option;
    private final Path shown;
    private final Path dir;
    private final List<String> names;
    private final boolean force;
    private final boolean isFile;
    private final List<Path> created = new ArrayList<>();
    private Path lock;
    private Path staging;
    private boolean published;

    private Output(String option, Path shown, Path dir, List<String> names, boolean force, boolean isFile) {
        this.option = option;
        this.isFile = isFile;
        this.shown = shown;
        this.dir = dir.toAbsolutePath().normalize();
        this.names = List.copyOf(names);
        this.force = force;
    }

    /**
     * Claims {@code dir} for the results of {@code option}.
     *
     * @param names globs of the result files relative to {@code dir} (e.g. {@code index.html}, {@code *.png},
     *     {@code profile-estimates/*}); the first is the main file, published last
     */
    static Output directory(String option, Path dir, boolean force, String... names) {
        if (Files.exists(dir) && !Files.isDirectory(dir)) {
            throw new KvqException(ErrorCode.IO, option + " " + dir + " is a file; give a directory");
        }
        Output o = new Output(option, dir, dir, List.of(names), force, false);
        o.claim();
        return o;
    }

    /**
     * Claims the file {@code file} (and its companion results beside it, globs relative to its directory) for
     * {@code option}.
     */
    static Output file(String option, Path file, boolean force, String... companions) {
        if (Files.isDirectory(file)) {
            throw new KvqException(ErrorCode.IO, option + " " + file + " is a directory; give a file name such as "
                    + file.resolve("profile.json"));
        }
        Path parent = file.toAbsolutePath().normalize().getParent();
        List<String> names = new ArrayList<>();
        names.add(file.getFileName().toString());
        names.addAll(List.of(companions));
        Output o = new Output(option, file, parent, names, force, true);
        o.claim();
        return o;
    }

    private void claim() {
        for (Path p = dir; p != null && !Files.exists(p); p = p.getParent()) {
            created.add(p);
        }
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            created.clear();
            throw new KvqException(ErrorCode.IO, option + " " + shown + " cannot be created: " + reason(e)
                    + "; give a directory you can write to");
        }
        lock();
        List<String> earlier = results();
        earlier.sort(Comparator.comparing((String r) -> !r.equals(names.getFirst())));
        if (!earlier.isEmpty() && !force) {
            close();
            throw new KvqException(ErrorCode.IO, option + " " + shown + " already holds results of an earlier run ("
                    + String.join(", ", earlier.subList(0, Math.min(4, earlier.size())))
                    + (earlier.size() > 4 ? " and " + (earlier.size() - 4) + " more" : "") + "); kvq does not overwrite "
                    + "results: choose another " + (isFile ? "file" : "directory") + ", or pass --force to replace them");
        }
    }

    private void lock() {
        Path file = dir.resolve(LOCK);
        String pid = String.valueOf(ProcessHandle.current().pid());
        for (int attempt = 0; ; attempt++) {
            try {
                create(file, pid);
                lock = file;
                return;
            } catch (FileAlreadyExistsException e) {
                String holder = holder(file);
                if (holder != null || attempt > 0) {
                    throw new KvqException(ErrorCode.IO, "another kvq run" + (holder == null ? "" : " (process " + holder
                            + ")") + " is writing to " + option + " " + shown + "; wait until it is done or choose another "
                            + "location (if no kvq run is active, delete " + file + ")");
                }
                try {
                    Files.deleteIfExists(file);
                } catch (IOException ignored) {
                    // the next attempt reports it
                }
            } catch (IOException e) {
                close();
                throw new KvqException(ErrorCode.IO, option + " " + shown + " is not writable: " + reason(e));
            }
        }
    }

    /**
     * Creates the lock {@code file} holding {@code pid}, whole or not at all: the pid is written beside it and linked
     * under the lock's name, which fails when a lock exists. A lock created empty and written after would be taken for
     * a stale one by a run reading it in between (and deleted under its owner). Where the file system has no links,
     * the lock is created and written in place.
     */
    private void create(Path file, String pid) throws IOException {
        Path written = Files.createTempFile(dir, LOCK + "-", ".tmp");
        try {
            Files.writeString(written, pid + "\n", StandardCharsets.UTF_8);
            try {
                Files.createLink(file, written);
            } catch (FileAlreadyExistsException held) {
                throw held;
            } catch (UnsupportedOperationException | FileSystemException noLinks) {
                Files.writeString(file, pid + "\n", StandardCharsets.UTF_8, StandardOpenOption.CREATE_NEW,
                        StandardOpenOption.WRITE);
            }
        } finally {
            Files.deleteIfExists(written);
        }
    }

    /** The process holding a lock, or null when the lock is stale (its process is gone or it is unreadable). */
    private static String holder(Path lock) {
        try {
            String pid = Files.readString(lock, StandardCharsets.UTF_8).trim();
            long id = Long.parseLong(pid);
            return ProcessHandle.of(id).map(ProcessHandle::isAlive).orElse(false) ? pid : null;
        } catch (IOException | NumberFormatException e) {
            return null;
        }
    }

    private static String reason(IOException e) {
        String file = e instanceof FileSystemException f && f.getFile() != null ? " (" + f.getFile() + ")" : "";
        return switch (e) {
            case NoSuchFileException n -> "no such file or directory" + file;
            case AccessDeniedException a -> "permission denied" + file;
            case FileAlreadyExistsException x -> "a file is in the way" + file;
            case FileSystemException f when f.getReason() != null -> f.getReason() + file;
            default -> e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
        };
    }

    private List<PathMatcher> matchers() {
        List<PathMatcher> out = new ArrayList<>();
        for (String n : names) {
            out.add(FileSystems.getDefault().getPathMatcher("glob:" + n));
        }
        return out;
    }

    /** Result files in the directory now, relative to it. */
    private List<String> results() {
        List<PathMatcher> matchers = matchers();
        List<String> out = new ArrayList<>();
        try (Stream<Path> files = Files.walk(dir, 2)) {
            files.filter(Files::isRegularFile).map(dir::relativize)
                    .filter(r -> !r.toString().startsWith("."))
                    .filter(r -> matchers.stream().anyMatch(m -> m.matches(r)))
                    .map(Path::toString).sorted().forEach(out::add);
        } catch (IOException | UncheckedIOException e) {
            throw new KvqException(ErrorCode.IO, option + " " + shown + " cannot be listed: " + e.getMessage());
        }
        return out;
    }

    /** The directory results go to. */
    Path dir() {
        return dir;
    }

    /** A folder inside the directory to write this run's results into; {@link #publish()} moves them into place. */
    Path staging() {
        if (staging == null) {
            try {
                staging = Files.createTempDirectory(dir, STAGING);
            } catch (IOException e) {
                throw new KvqException(ErrorCode.IO, option + " " + shown + " is not writable: " + reason(e));
            }
        }
        return staging;
    }

    /** Moves the staged files into the directory (atomic renames, the main file last); returns the published paths. */
    List<Path> publish() {
        List<Path> staged;
        try (Stream<Path> files = Files.walk(staging())) {
            staged = new ArrayList<>(files.filter(Files::isRegularFile).toList());
        } catch (IOException e) {
            throw new KvqException(ErrorCode.IO, "cannot list " + staging + ": " + e.getMessage(), e);
        }
        PathMatcher main = FileSystems.getDefault().getPathMatcher("glob:" + names.getFirst());
        staged.sort(Comparator.comparing((Path p) -> main.matches(staging.relativize(p))).thenComparing(Path::toString));
        Set<String> written = new HashSet<>();
        List<Path> out = new ArrayList<>();
        try {
            for (Path p : staged) {
                Path relative = staging.relativize(p);
                Path target = dir.resolve(relative.toString());
                Files.createDirectories(target.getParent());
                try {
                    Files.move(p, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
                } catch (AtomicMoveNotSupportedException e) {
                    Files.move(p, target, StandardCopyOption.REPLACE_EXISTING);
                }
                written.add(relative.toString());
                out.add(target);
            }
            published = true;
            if (force) {
                for (String stale : results()) {
                    if (!written.contains(stale)) {
                        Files.deleteIfExists(dir.resolve(stale));
                    }
                }
            }
        } catch (IOException e) {
            throw new KvqException(ErrorCode.IO, "cannot write the results to " + option + " " + shown + ": " + reason(e));
        }
        deleteStaging();
        return out;
    }

    private void deleteStaging() {
        if (staging == null) {
            return;
        }
        try (Stream<Path> files = Files.walk(staging)) {
            for (Path p : files.sorted(Comparator.reverseOrder()).toList()) {
                Files.deleteIfExists(p);
            }
        } catch (IOException | UncheckedIOException e) {
            // a leftover hidden folder is harmless
        }
        staging = null;
    }

    @Override
    public void close() {
        deleteStaging();
        if (lock != null) {
            try {
                Files.deleteIfExists(lock);
            } catch (IOException e) {
                // the next run takes over a stale lock
            }
            lock = null;
        }
        if (!published) {
            for (Path p : created) {
                try {
                    Files.deleteIfExists(p);
                } catch (IOException e) {
                    break;
                }
            }
        }
        created.clear();
    }
}
