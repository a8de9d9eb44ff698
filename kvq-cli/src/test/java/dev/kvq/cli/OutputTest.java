package dev.kvq.cli;

import static dev.kvq.cli.CommandTest.kvq;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.KvqException;
import dev.kvq.testkit.Repo;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** No result is ever destroyed: output locations are claimed before work, locked, written atomically. */
class OutputTest {
    private static final String M = Repo.demoModel().toString();
    private static final String T = Repo.demoText().toString();

    @TempDir
    Path dir;

    // ---- the claim itself ----

    @Test
    void forcedRunReplacesEarlierResultsAndRemovesItsStaleOnesButNoOtherFile() throws IOException {
        Path out = dir.resolve("tuned");
        Files.createDirectories(out);
        Files.writeString(out.resolve("front-00-2.000bits.yaml"), "old");
        Files.writeString(out.resolve("front-07-4.000bits.yaml"), "old, stale");
        Files.writeString(out.resolve("notes.txt"), "the user's own file");
        try (Output o = Output.directory("--out-dir", out, true, "search.json", "front-*.yaml")) {
            Files.writeString(o.staging().resolve("front-00-2.000bits.yaml"), "new");
            Files.writeString(o.staging().resolve("search.json"), "{}");
            assertEquals("old", Files.readString(out.resolve("front-00-2.000bits.yaml")), "nothing moves before publish");
            o.publish();
        }
        assertEquals(List.of("front-00-2.000bits.yaml", "notes.txt", "search.json"), names(out));
        assertEquals("new", Files.readString(out.resolve("front-00-2.000bits.yaml")));
        assertEquals("the user's own file", Files.readString(out.resolve("notes.txt")));
    }

    @Test
    void aDirectoryWithOtherFilesButNoResultsIsAccepted() throws IOException {
        Path out = Files.createDirectories(dir.resolve("cal"));
        Files.writeString(out.resolve("profile.json"), "calibrate's, not tune's");
        try (Output o = Output.directory("--out-dir", out, false, "search.json", "front-*.yaml")) {
            Files.writeString(o.staging().resolve("search.json"), "{}");
            o.publish();
        }
        assertEquals(List.of("profile.json", "search.json"), names(out));
    }

    @Test
    void aRunThatFailsLeavesNoDirectoryLockOrStagingBehind() throws IOException {
        Path out = dir.resolve("a/b/report");
        try (Output o = Output.directory("--report", out, false, "index.html")) {
            Files.writeString(o.staging().resolve("index.html"), "half a report");
            assertTrue(Files.exists(out.resolve(Output.LOCK)));
            // the work fails here: no publish
        }
        assertFalse(Files.exists(dir.resolve("a")), "the directories the claim created are gone");

        Path existing = Files.createDirectories(dir.resolve("existing"));
        try (Output o = Output.directory("--report", existing, false, "index.html")) {
            Files.writeString(o.staging().resolve("index.html"), "half a report");
        }
        assertEquals(List.of(), names(existing));
    }

    @Test
    void aLockOfALiveProcessRefusesAndOneOfAFinishedProcessIsTakenOver() throws Exception {
        Path out = Files.createDirectories(dir.resolve("report"));
        long live = ProcessHandle.current().pid();
        Files.writeString(out.resolve(Output.LOCK), live + "\n");
        KvqException e = assertThrows(KvqException.class, () -> Output.directory("--report", out, false, "index.html"));
        assertEquals("another kvq run (process " + live + ") is writing to --report " + out + "; wait until it is done "
                + "or choose another location (if no kvq run is active, delete " + out.resolve(Output.LOCK) + ")",
                e.getMessage());

        Process gone = new ProcessBuilder("true").start();
        gone.waitFor();
        Files.writeString(out.resolve(Output.LOCK), gone.pid() + "\n");
        try (Output o = Output.directory("--report", out, false, "index.html")) {
            assertEquals(String.valueOf(live), Files.readString(out.resolve(Output.LOCK)).trim());
        }
        assertFalse(Files.exists(out.resolve(Output.LOCK)));
    }

    // ---- through the commands ----

    @Test
    void tuneRefusesASecondRunIntoItsOutDirAndForceReplacesTheFirstRunWhole() throws IOException {
        Path profile = dir.resolve("cal/profile.json");
        CommandTest.Run cal = kvq("calibrate", "--model", M, "--data", T, "--length", "3000", "--window", "96",
                "--windows", "1", "--kl-windows", "0", "--groups", "2", "--out", profile.toString());
        assertEquals(0, cal.exit(), cal.err());
        Path out = dir.resolve("tuned");
        List<String> args = List.of("tune", "--model", M, "--profile", profile.toString(), "--data", T, "--offset",
                "3000", "--length", "2000", "--window", "96", "--windows", "1", "--prefill", "16", "--trials", "6",
                "--threads", "1", "--no-baselines", "--out-dir", out.toString());
        CommandTest.Run first = kvq(with(args, "--max-avg-bits", "3.5", "--budgets", "3,3.5"));
        assertEquals(0, first.exit(), first.err());
        assertTrue(names(out).containsAll(List.of("best-3.00bits.yaml", "best-3.50bits.kvq.yaml", "index.html",
                "pareto.png", "search.json")), names(out).toString());
        BadInputTest.Snapshot firstRun = BadInputTest.Snapshot.of(out);

        CommandTest.Run second = kvq(with(args, "--max-avg-bits", "3.5"));
        assertEquals(2, second.exit(), second.err());
        assertTrue(second.err().startsWith("kvq: --out-dir " + out + " already holds results of an earlier run (index.html, "
                + "best-3.00bits.kvq.yaml"), second.err());
        assertEquals("", second.out());
        firstRun.assertSame(BadInputTest.Snapshot.of(out));

        CommandTest.Run forced = kvq(with(args, "--max-avg-bits", "2.5", "--force"));
        assertEquals(0, forced.exit(), forced.err());
        List<String> files = names(out);
        assertFalse(files.contains("best-3.00bits.yaml") || files.contains("best-3.50bits.kvq.yaml"),
                "the first run's best files are gone: " + files);
        assertTrue(files.contains("best-2.50bits.kvq.yaml"), files.toString());
        // every front file on disk is one search.json lists, and the other way round
        String search = Files.readString(out.resolve("search.json"));
        Set<String> listed = new TreeSet<>();
        Matcher m = Pattern.compile("\"file\" : \"(front-[^\"]+)\"").matcher(search);
        while (m.find()) {
            listed.add(m.group(1));
        }
        assertEquals(listed, new TreeSet<>(files.stream().filter(f -> f.startsWith("front-")).toList()));
        assertFalse(files.contains(Output.LOCK));
    }

    @Test
    void twoConcurrentRunsIntoOneReportDirectory() throws Exception {
        Path report = dir.resolve("report");
        List<CommandTest.Run> runs = concurrently(
                new String[] {"eval", "ppl", "--model", M, "--data", T, "--length", "600", "--window", "96", "--prefill",
                    "16", "--report", report.toString()},
                new String[] {"bench", "--model", M, "--contexts", "32", "--decode-steps", "2", "--repeats", "1",
                    "--report", report.toString()});
        List<Integer> exits = runs.stream().map(CommandTest.Run::exit).sorted().toList();
        assertEquals(List.of(0, 2), exits, runs.toString());
        CommandTest.Run refused = runs.stream().filter(r -> r.exit() == 2).findFirst().orElseThrow();
        assertTrue(refused.err().contains("another kvq run (process ") || refused.err().contains("already holds results"),
                refused.err());
        assertEquals("", refused.out());
        assertReportIsWhole(report);
    }

    @Test
    void twoConcurrentForcedRunsLeaveOneWholeReport() throws Exception {
        Path report = dir.resolve("report");
        List<CommandTest.Run> runs = concurrently(
                new String[] {"eval", "ppl", "--model", M, "--data", T, "--length", "600", "--window", "96", "--prefill",
                    "16", "--report", report.toString(), "--force"},
                new String[] {"bench", "--model", M, "--contexts", "32", "--decode-steps", "2", "--repeats", "1",
                    "--report", report.toString(), "--force"});
        for (CommandTest.Run r : runs) {
            assertTrue(r.exit() == 0 || r.err().contains("another kvq run (process "), r.toString());
        }
        assertTrue(runs.stream().anyMatch(r -> r.exit() == 0), runs.toString());
        assertReportIsWhole(report);
    }

    /** index.html shows exactly the PNG files beside it: no plot of another run, none missing. */
    private static void assertReportIsWhole(Path report) throws IOException {
        String html = Files.readString(report.resolve("index.html"));
        Set<String> shown = new TreeSet<>();
        Matcher m = Pattern.compile("<img src=\"([^\"]+)\"").matcher(html);
        while (m.find()) {
            shown.add(m.group(1));
        }
        assertFalse(shown.isEmpty(), html);
        Set<String> files = new TreeSet<>(names(report));
        files.remove("index.html");
        assertEquals(shown, files, "the page's plots and the files beside it");
    }

    private static List<CommandTest.Run> concurrently(String[]... commands) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(commands.length);
        try {
            CountDownLatch start = new CountDownLatch(1);
            List<Future<CommandTest.Run>> futures = new ArrayList<>();
            for (String[] c : commands) {
                futures.add(pool.submit(() -> {
                    start.await();
                    return kvq(c);
                }));
            }
            start.countDown();
            List<CommandTest.Run> out = new ArrayList<>();
            for (Future<CommandTest.Run> f : futures) {
                out.add(f.get());
            }
            return out;
        } finally {
            pool.shutdownNow();
        }
    }

    private static String[] with(List<String> args, String... more) {
        List<String> all = new ArrayList<>(args);
        all.addAll(List.of(more));
        return all.toArray(String[]::new);
    }

    private static List<String> names(Path dir) throws IOException {
        try (Stream<Path> files = Files.list(dir)) {
            return files.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }
}
