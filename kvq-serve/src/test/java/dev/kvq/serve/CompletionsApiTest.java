package dev.kvq.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.Generator;
import dev.kvq.generate.Logits;
import dev.kvq.generate.SamplingParams;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The completions API on the demo model gives what kvq generate gives, whole, streamed and scored. */
class CompletionsApiTest {
    private static TestServer server;

    @BeforeAll
    static void start() {
        server = new TestServer(TestServer.perToken4(), 8L << 20, 64, 64);
    }

    @AfterAll
    static void stop() {
        server.close();
    }

    private static JsonNode complete(Object... fields) {
        HttpResponse<String> r = server.post("/v1/completions", TestServer.body(fields));
        assertEquals(200, r.statusCode(), r.body());
        return TestServer.json(r.body());
    }

    @Test
    void greedyAndSampledCompletionsAreWhatKvqGenerateGives() {
        JsonNode greedy = complete("prompt", "ROMEO:\n", "max_tokens", 48, "temperature", 0);
        assertEquals(server.generate("ROMEO:\n", 48, SamplingParams.greedy()),
                greedy.at("/choices/0/text").asText());
        assertEquals("length", greedy.at("/choices/0/finish_reason").asText());
        assertEquals(48, greedy.at("/usage/completion_tokens").asInt());
        assertEquals(7, greedy.at("/usage/prompt_tokens").asInt());

        JsonNode sampled = complete("prompt", "KING:\n", "max_tokens", 48, "temperature", 0.9, "top_p", 0.95,
                "seed", 11);
        String expected = server.generate("KING:\n", 48, new SamplingParams(0.9, 0, 0.95, 11));
        assertEquals(expected, sampled.at("/choices/0/text").asText());
        JsonNode otherSeed = complete("prompt", "KING:\n", "max_tokens", 48, "temperature", 0.9, "top_p", 0.95,
                "seed", 12);
        assertTrue(!expected.equals(otherSeed.at("/choices/0/text").asText()), "the seed decides the sample");
        server.awaitIdleAndEmpty();
    }

    @Test
    void promptsOfOneRequestAreSeededAsTheBatchOfOneGenerateCall() {
        List<String> prompts = List.of("ROMEO:\n", "JULIET:\nO Romeo", "KING:\n");
        SamplingParams sampling = new SamplingParams(0.8, 0, 1, 5);
        List<Generator.Result> expected = server.generate(prompts, 30, sampling, List.of());
        JsonNode out = complete("prompt", prompts, "max_tokens", 30, "temperature", 0.8, "seed", 5);
        for (int i = 0; i < prompts.size(); i++) {
            assertEquals(i, out.at("/choices/" + i + "/index").asInt());
            assertEquals(expected.get(i).text(), out.at("/choices/" + i + "/text").asText(), "prompt " + i);
        }
    }

    @Test
    void aStopStringEndsTheTextBeforeIt() {
        List<Generator.Result> expected = server.generate(List.of("KING:\n"), 200, SamplingParams.greedy(),
                List.of("\n"));
        JsonNode out = complete("prompt", "KING:\n", "max_tokens", 200, "temperature", 0, "stop", "\n");
        assertEquals("stop", expected.getFirst().stopReason());
        assertEquals(expected.getFirst().text(), out.at("/choices/0/text").asText());
        assertEquals("stop", out.at("/choices/0/finish_reason").asText());
    }

    @Test
    void tokenIdsAsPromptGiveWhatTheirTextGives() {
        int[] ids = server.referenceTokenizer().encode("ROMEO:\n");
        JsonNode byIds = complete("prompt", ids, "max_tokens", 20, "temperature", 0, "echo", true);
        JsonNode byText = complete("prompt", "ROMEO:\n", "max_tokens", 20, "temperature", 0);
        assertEquals("ROMEO:\n" + byText.at("/choices/0/text").asText(), byIds.at("/choices/0/text").asText());
    }

    @Test
    void aStreamSendsTheSameTextInPiecesThenTheFinishReasonAndDone() {
        String expected = server.generate("ROMEO:\n", 40, SamplingParams.greedy());
        HttpResponse<String> r = server.post("/v1/completions", TestServer.body("prompt", "ROMEO:\n", "max_tokens", 40,
                "temperature", 0, "stream", true));
        assertEquals(200, r.statusCode(), r.body());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("text/event-stream"));
        StringBuilder text = new StringBuilder();
        List<String> reasons = new ArrayList<>();
        String last = null;
        for (String line : r.body().split("\n")) {
            if (!line.startsWith("data: ")) {
                assertTrue(line.isEmpty(), "an event line: " + line);
                continue;
            }
            last = line.substring(6);
            if (last.equals("[DONE]")) {
                continue;
            }
            JsonNode chunk = TestServer.json(last);
            assertEquals("text_completion", chunk.get("object").asText());
            text.append(chunk.at("/choices/0/text").asText());
            if (!chunk.at("/choices/0/finish_reason").isNull()) {
                reasons.add(chunk.at("/choices/0/finish_reason").asText());
            }
        }
        assertEquals(expected, text.toString());
        assertEquals(List.of("length"), reasons);
        assertEquals("[DONE]", last);
    }

    /**
     * Echo with logprobs and no new tokens scores the prompt: each token's log-probability after the ones before it,
     * checked against a log-softmax of the logits a separate session computes for the same tokens.
     */
    @Test
    void echoWithLogprobsAndNoNewTokensScoresThePrompt() {
        String prompt = "ROMEO:\nBut soft";
        JsonNode out = complete("prompt", prompt, "max_tokens", 0, "echo", true, "logprobs", 2);
        JsonNode lp = out.at("/choices/0/logprobs");
        int[] ids = server.referenceTokenizer().encode(prompt);
        assertEquals(prompt, out.at("/choices/0/text").asText());
        assertEquals(0, out.at("/usage/completion_tokens").asInt());
        assertEquals(ids.length, lp.get("tokens").size());
        assertTrue(lp.at("/token_logprobs/0").isNull(), "the first token has no context to be scored in");
        float[][] logits;
        try (DecodeSession session = server.caches.session(server.referenceDecoder(), 1)) {
            logits = session.feed(new int[][] {ids}, true)[0];
        }
        for (int k = 1; k < ids.length; k++) {
            double expected = logits[k - 1][ids[k]] - Logits.logSumExp(logits[k - 1]);
            assertEquals(expected, lp.at("/token_logprobs/" + k).asDouble(), 1e-9, "token " + k);
            assertEquals(String.valueOf(prompt.charAt(k)), lp.at("/tokens/" + k).asText());
            assertEquals(k, lp.at("/text_offset/" + k).asInt());
            JsonNode top = lp.at("/top_logprobs/" + k);
            assertEquals(2, top.size());
            double best = Double.NEGATIVE_INFINITY;
            for (Map.Entry<String, JsonNode> e : top.properties()) {
                best = Math.max(best, e.getValue().asDouble());
            }
            assertTrue(best >= lp.at("/token_logprobs/" + k).asDouble(), "the top alternative is the most likely");
        }
        server.awaitIdleAndEmpty();
    }

    @Test
    void modelsHealthAndMetricsAnswer() {
        JsonNode models = TestServer.json(server.get("/v1/models").body());
        assertEquals(TestServer.MODEL.name(), models.at("/data/0/id").asText());
        JsonNode health = TestServer.json(server.get("/health").body());
        assertEquals("ok", health.get("status").asText());
        assertEquals(8L << 20, health.get("kv_memory_bytes").asLong());
        complete("prompt", "ROMEO:", "max_tokens", 3, "temperature", 0);
        HttpResponse<String> metrics = server.get("/metrics");
        assertEquals(200, metrics.statusCode());
        for (String name : List.of("kvq_generated_tokens_total", "kvq_tokens_per_second", "kvq_queue_depth",
                "kvq_kv_cache_held_bytes", "kvq_kv_cache_reserved_bytes", "kvq_kv_memory_budget_bytes",
                "kvq_active_sequences", "kvq_time_to_first_token_seconds_count")) {
            assertTrue(metrics.body().contains("\n" + name + " "), name + " in\n" + metrics.body());
        }
    }
}
