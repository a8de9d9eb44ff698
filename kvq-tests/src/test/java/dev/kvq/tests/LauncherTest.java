package dev.kvq.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kvq.testkit.Repo;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The {@code ./kvq} launcher as a user runs it: no JVM warnings, no library chatter on standard error. */
class LauncherTest {
    @TempDir
    Path work;

    private Path launcher;

    @BeforeEach
    void built() throws IOException {
        launcher = Repo.root().resolve("kvq");
        Path lib = Repo.root().resolve("kvq-cli/target/lib");
        boolean built;
        try (var jars = Files.list(lib)) {
            built = jars.anyMatch(j -> j.getFileName().toString().startsWith("kvq-cli-"));
        } catch (IOException e) {
            built = false;
        }
        Assumptions.assumeTrue(built, () -> "skipped: " + lib + " holds no kvq-cli jar; the launcher runs what "
                + "mvn package (or verify, install) puts there");
    }

    record Result(int exit, String out, String err) {
    }

    private Result kvq(String... args) throws Exception {
        List<String> cmd = new ArrayList<>(List.of(launcher.toString()));
        cmd.addAll(List.of(args));
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectOutput(work.resolve("out.txt").toFile())
                .redirectError(work.resolve("err.txt").toFile());
        Map<String, String> env = pb.environment();
        env.put("JAVA_HOME", System.getProperty("java.home"));
        env.remove("KVQ_JAVA_OPTS");
        int exit = pb.start().waitFor();
        return new Result(exit, Files.readString(work.resolve("out.txt"), StandardCharsets.UTF_8),
                Files.readString(work.resolve("err.txt"), StandardCharsets.UTF_8));
    }

    @Test
    void bothRuntimesRunWithoutNativeAccessWarnings() throws Exception {
        for (String runtime : List.of("onnx", "djl")) {
            Result r = kvq("generate", "--model", Repo.demoModel().toString(), "--prompt", "KING:", "--max-new-tokens",
                    "2", "--runtime", runtime, "--json");
            assertEquals(0, r.exit(), r.err());
            assertFalse(r.err().contains("WARNING"), runtime + ":\n" + r.err());
        }
    }

    @Test
    void longBenchMarksDamagedTasksAndEnglishTasksLoadNoDictionary() throws Exception {
        Path data = Files.createDirectories(work.resolve("longbench"));
        Files.writeString(data.resolve("dataset2prompt.json"), "{\"multi_news\": \"{context}\", \"qasper\": "
                + "\"{context} Q: {input} A:\"}");
        Files.writeString(data.resolve("dataset2maxlen.json"), "{\"multi_news\": 4, \"qasper\": 4}");
        Files.writeString(data.resolve("multi_news.jsonl"), "{\"input\": \"\", \"context\": \"KING: the king is "
                + "here.\", \"answers\": [\"the king\"], \"_id\": \"0\"}\n");
        Files.createDirectories(data.resolve("damaged"));
        Files.writeString(data.resolve("damaged/qasper.jsonl"), "{\"input\": \"who?\", \"context\": \"the king\ufffd? "
                + "spoke\", \"answers\": [\"the king\"], \"_id\": \"1\"}\n");
        Result r = kvq("eval", "longbench", "--model", Repo.demoModel().toString(), "--data", data.toString(),
                "--unknown-chars", "replace", "--json");
        assertEquals(0, r.exit(), r.err());
        assertEquals("", r.err(), "nothing but results: no dictionary chatter, no warnings");
        Map<String, Boolean> damaged = new HashMap<>();
        for (JsonNode task : new ObjectMapper().readTree(r.out()).path("tasks")) {
            damaged.put(task.path("task").asText(), task.path("damaged").asBoolean());
        }
        assertEquals(Map.of("multi_news", false, "qasper", true), damaged);
        Result text = kvq("eval", "longbench", "--model", Repo.demoModel().toString(), "--data", data.toString(),
                "--unknown-chars", "replace", "--tasks", "qasper");
        assertEquals(0, text.exit(), text.err());
        assertTrue(text.out().contains("qasper (damaged)"), text.out());
    }
}
