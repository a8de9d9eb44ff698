package dev.kvq.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kvq.generate.SamplingParams;
import dev.kvq.testkit.Repo;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * A third-party client against a running server: the official {@code openai} package for Node (pinned in
 * {@code src/test/node}, installed there by {@code npm ci}, which {@code .ci/run} does) completes, streams and scores
 * a prompt. Skipped, saying why, where Node or the installed package is missing.
 */
class OpenAiClientTest {
    private static final Path CLIENT = Repo.root().resolve("kvq-serve/src/test/node");

    @Test
    void theOfficialOpenAiClientCompletesStreamsAndScores() throws Exception {
        Assumptions.assumeTrue(nodeRuns(), "node is not on the PATH: install Node.js 20+ to run this test");
        Assumptions.assumeTrue(Files.isDirectory(CLIENT.resolve("node_modules/openai")), "the openai package is not "
                + "installed: run `npm ci` in " + CLIENT + " (.ci/run does)");
        try (TestServer server = new TestServer(TestServer.perToken4(), 8L << 20, 16, 16)) {
            Process node = new ProcessBuilder("node", "openai-client.mjs", "http://127.0.0.1:" + server.server.port()
                    + "/v1", TestServer.MODEL.name()).directory(CLIENT.toFile()).redirectErrorStream(false).start();
            String out = new String(node.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            String err = new String(node.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
            assertTrue(node.waitFor(2, TimeUnit.MINUTES), "the client ended");
            assertEquals(0, node.exitValue(), "the client failed:\n" + err + out);
            JsonNode got = TestServer.json(out);

            String expected = server.generate("ROMEO:\n", 32, SamplingParams.greedy());
            assertEquals(expected, got.get("completion").asText());
            assertEquals("length", got.get("completionFinish").asText());
            assertEquals(32, got.at("/usage/completion_tokens").asInt());
            assertEquals(expected, got.get("streamed").asText());
            assertEquals("length", got.get("streamFinish").asText());

            String prompt = "ROMEO:\nBut soft";
            assertEquals(prompt, got.get("scoredText").asText());
            JsonNode lp = got.get("scored");
            assertEquals(prompt.length(), lp.get("tokens").size());
            assertTrue(lp.at("/token_logprobs/0").isNull());
            for (int k = 1; k < prompt.length(); k++) {
                double l = lp.at("/token_logprobs/" + k).asDouble();
                assertTrue(l <= 0 && l > -20, "token " + k + " scored " + l);
                assertEquals(1, lp.at("/top_logprobs/" + k).size());
            }
            assertEquals(400, got.at("/refusal/status").asInt());
            assertTrue(got.at("/refusal/message").asText().contains("max_tokens must be 0 or more"), got.toString());
            server.awaitIdleAndEmpty();
        }
    }

    private static boolean nodeRuns() {
        try {
            Process p = new ProcessBuilder("node", "--version").redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            return p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }
}
