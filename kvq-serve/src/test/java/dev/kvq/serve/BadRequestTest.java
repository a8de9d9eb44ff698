package dev.kvq.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.net.http.HttpResponse;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Every bad request is answered with a 4xx and OpenAI's error body naming what is wrong; none reaches the model. */
class BadRequestTest {
    /** Budget of the server: a few short sequences, but not one of the whole context. */
    private static final long BUDGET = 200_000;
    private static TestServer server;

    @BeforeAll
    static void start() {
        server = new TestServer(TestServer.perToken4(), BUDGET, 8, 8);
    }

    @AfterAll
    static void stop() {
        server.close();
    }

    static Stream<Arguments> badRequests() {
        return Stream.of(
                Arguments.of("malformed JSON", "POST", "/v1/completions", "{\"prompt\": \"ROMEO\",", 400, "not valid JSON"),
                Arguments.of("empty body", "POST", "/v1/completions", "", 400, "body is empty"),
                Arguments.of("not an object", "POST", "/v1/completions", "[1, 2]", 400, "JSON object"),
                Arguments.of("unknown field", "POST", "/v1/completions", "{\"prompt\": \"A\", \"best_of\": 2}", 400,
                        "unknown field 'best_of'"),
                Arguments.of("negative max_tokens", "POST", "/v1/completions", "{\"prompt\": \"A\", \"max_tokens\": -3}",
                        400, "max_tokens must be 0 or more, was -3"),
                Arguments.of("max_tokens as text", "POST", "/v1/completions",
                        "{\"prompt\": \"A\", \"max_tokens\": \"5\"}", 400, "field 'max_tokens' has the wrong type"),
                Arguments.of("fractional max_tokens", "POST", "/v1/completions",
                        "{\"prompt\": \"A\", \"max_tokens\": 2.5}", 400, "field 'max_tokens' has the wrong type"),
                Arguments.of("missing prompt", "POST", "/v1/completions", "{\"max_tokens\": 3}", 400, "prompt is missing"),
                Arguments.of("empty prompt", "POST", "/v1/completions", "{\"prompt\": \"\"}", 400, "prompt is empty"),
                Arguments.of("character outside the vocabulary", "POST", "/v1/completions",
                        "{\"prompt\": \"ROMEO \\u00e9\"}", 400, "not in the model's 65-character vocabulary"),
                Arguments.of("token id outside the vocabulary", "POST", "/v1/completions", "{\"prompt\": [3, 65]}", 400,
                        "token id 65, outside the model's vocabulary of 65"),
                Arguments.of("negative temperature", "POST", "/v1/completions",
                        "{\"prompt\": \"A\", \"temperature\": -1}", 400, "temperature must be 0"),
                Arguments.of("top_p of 0", "POST", "/v1/completions", "{\"prompt\": \"A\", \"top_p\": 0}", 400,
                        "top_p must be more than 0"),
                Arguments.of("n of 2", "POST", "/v1/completions", "{\"prompt\": \"A\", \"n\": 2}", 400, "n must be 1"),
                Arguments.of("logprobs of 50", "POST", "/v1/completions", "{\"prompt\": \"A\", \"logprobs\": 50}", 400,
                        "logprobs must be between 0 and 20"),
                Arguments.of("stop of a number", "POST", "/v1/completions", "{\"prompt\": \"A\", \"stop\": 3}", 400,
                        "stop must be a string"),
                Arguments.of("longer than the context", "POST", "/v1/completions",
                        "{\"prompt\": \"ROMEO\", \"max_tokens\": 1020}", 400, "the model has 1024 (its context length)"),
                Arguments.of("alone bigger than the budget", "POST", "/v1/completions",
                        "{\"prompt\": \"ROMEO\", \"max_tokens\": 900}", 400, "budget of " + BUDGET + " bytes (--kv-memory)"),
                Arguments.of("another model", "POST", "/v1/completions", "{\"prompt\": \"A\", \"model\": \"gpt-4\"}", 404,
                        "the model 'gpt-4' does not exist"),
                Arguments.of("unknown endpoint", "GET", "/v1/chat/completions", null, 404, "no endpoint GET"),
                Arguments.of("wrong method", "GET", "/v1/completions", null, 404, "POST /v1/completions"));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("badRequests")
    void isA4xxWithAMessage(String what, String method, String path, String body, int status, String message) {
        HttpResponse<String> r = method.equals("GET") ? server.get(path) : server.post(path, body);
        assertEquals(status, r.statusCode(), r.body());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("application/json"));
        JsonNode error = TestServer.json(r.body()).get("error");
        String text = error.get("message").asText();
        assertTrue(text.contains(message), "'" + message + "' in: " + text);
        assertEquals(status == 404 ? "invalid_request_error" : "invalid_request_error", error.get("type").asText());
        assertFalse(r.body().contains("\tat ") || r.body().contains("Exception"), "no stack trace: " + r.body());
        server.awaitIdleAndEmpty();
    }
}
