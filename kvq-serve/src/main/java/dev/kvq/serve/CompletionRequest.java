package dev.kvq.serve;

import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.MapperFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.exc.MismatchedInputException;
import com.fasterxml.jackson.databind.exc.UnrecognizedPropertyException;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.kvq.generate.SamplingParams;
import java.util.ArrayList;
import java.util.List;

/**
 * A {@code POST /v1/completions} body, checked: every field OpenAI's completions API defines that kvq implements, with
 * OpenAI's defaults (16 tokens, temperature 1, top_p 1), except {@code seed}, which defaults to 0 so that a request
 * is reproducible. Fields kvq does not implement are refused by name rather than ignored.
 */
record CompletionRequest(String model, List<Prompt> prompts, int maxTokens, SamplingParams sampling, List<String> stop,
                         boolean stream, int logprobs, boolean echo) {
    /** Most alternatives {@code logprobs} may ask for per position. */
    static final int MAX_LOGPROBS = 20;

    private static final ObjectMapper JSON = JsonMapper.builder()
            .enable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, DeserializationFeature.FAIL_ON_TRAILING_TOKENS,
                    DeserializationFeature.FAIL_ON_NULL_FOR_PRIMITIVES)
            .disable(MapperFeature.ALLOW_COERCION_OF_SCALARS)
            .disable(DeserializationFeature.ACCEPT_FLOAT_AS_INT)
            .build();

    /** The body as JSON maps it; absent fields are null. */
    record Body(@JsonProperty("model") String model, @JsonProperty("prompt") JsonNode prompt,
                @JsonProperty("max_tokens") Integer maxTokens, @JsonProperty("temperature") Double temperature,
                @JsonProperty("top_p") Double topP, @JsonProperty("stop") JsonNode stop,
                @JsonProperty("seed") Long seed, @JsonProperty("stream") Boolean stream,
                @JsonProperty("logprobs") Integer logprobs, @JsonProperty("echo") Boolean echo,
                @JsonProperty("n") Integer n, @JsonProperty("user") String user) {
    }

    /** Fields a body may have, for the message that refuses another. */
    static final String FIELDS = "model, prompt, max_tokens, temperature, top_p, stop, seed, stream, logprobs, echo, "
            + "n (1), user";

    /** Parses and checks {@code json}; fails with a 400 that names the field. */
    static CompletionRequest parse(byte[] json) {
        Body body;
        try {
            body = JSON.readValue(json, Body.class);
        } catch (UnrecognizedPropertyException e) {
            throw ApiError.invalid(e.getPropertyName(), "unknown field '" + e.getPropertyName() + "'; this server takes "
                    + FIELDS);
        } catch (MismatchedInputException e) {
            String field = e.getPath().isEmpty() ? null : e.getPath().getFirst().getFieldName();
            if (field == null) {
                throw ApiError.invalid(null, "the body must be a JSON object with a prompt");
            }
            throw ApiError.invalid(field, "field '" + field + "' has the wrong type: " + firstLine(e.getOriginalMessage()));
        } catch (JsonProcessingException e) {
            throw ApiError.invalid(null, "the body is not valid JSON: " + firstLine(e.getOriginalMessage()));
        } catch (java.io.IOException e) {
            throw ApiError.invalid(null, "the body could not be read: " + e.getMessage());
        }
        if (body == null) {
            throw ApiError.invalid(null, "the body must be a JSON object with a prompt");
        }
        return of(body);
    }

    private static CompletionRequest of(Body b) {
        List<Prompt> prompts = prompts(b.prompt());
        int maxTokens = b.maxTokens() == null ? 16 : b.maxTokens();
        if (maxTokens < 0) {
            throw ApiError.invalid("max_tokens", "max_tokens must be 0 or more, was " + maxTokens);
        }
        double temperature = b.temperature() == null ? 1 : b.temperature();
        if (!(temperature >= 0) || Double.isInfinite(temperature)) {
            throw ApiError.invalid("temperature", "temperature must be 0 (greedy) or positive, was " + temperature);
        }
        double topP = b.topP() == null ? 1 : b.topP();
        if (!(topP > 0 && topP <= 1)) {
            throw ApiError.invalid("top_p", "top_p must be more than 0 and at most 1, was " + topP);
        }
        if (b.n() != null && b.n() != 1) {
            throw ApiError.invalid("n", "n must be 1 (one completion per prompt), was " + b.n()
                    + "; send the prompt again with another seed for more");
        }
        int logprobs = b.logprobs() == null ? -1 : b.logprobs();
        if (b.logprobs() != null && (logprobs < 0 || logprobs > MAX_LOGPROBS)) {
            throw ApiError.invalid("logprobs", "logprobs must be between 0 and " + MAX_LOGPROBS + ", was " + logprobs);
        }
        boolean echo = b.echo() != null && b.echo();
        boolean stream = b.stream() != null && b.stream();
        if (stream && echo && logprobs >= 0) {
            throw ApiError.invalid("echo", "echo with logprobs is answered whole; leave out stream");
        }
        long seed = b.seed() == null ? 0 : b.seed();
        return new CompletionRequest(b.model(), prompts, maxTokens, new SamplingParams(temperature, 0, topP, seed),
                stops(b.stop()), stream, logprobs, echo);
    }

    private static List<Prompt> prompts(JsonNode node) {
        if (node == null || node.isNull()) {
            throw ApiError.invalid("prompt", "prompt is missing; give a string, an array of strings, an array of token "
                    + "ids or an array of arrays of token ids");
        }
        if (node.isTextual()) {
            return List.of(text(node.textValue(), "prompt"));
        }
        if (!node.isArray() || node.isEmpty()) {
            throw ApiError.invalid("prompt", "prompt must be a string, a non-empty array of strings, of token ids, or of "
                    + "arrays of token ids");
        }
        if (node.get(0).isIntegralNumber()) {
            return List.of(new Prompt.Tokens(ids(node, "prompt")));
        }
        List<Prompt> out = new ArrayList<>();
        for (int i = 0; i < node.size(); i++) {
            JsonNode p = node.get(i);
            String where = "prompt[" + i + "]";
            if (p.isTextual()) {
                out.add(text(p.textValue(), where));
            } else if (p.isArray()) {
                out.add(new Prompt.Tokens(ids(p, where)));
            } else {
                throw ApiError.invalid("prompt", where + " must be a string or an array of token ids, was " + p);
            }
        }
        return out;
    }

    private static Prompt text(String s, String where) {
        if (s.isEmpty()) {
            throw ApiError.invalid("prompt", where + " is empty; give at least one character");
        }
        return new Prompt.Text(s);
    }

    private static int[] ids(JsonNode array, String where) {
        if (array.isEmpty()) {
            throw ApiError.invalid("prompt", where + " is an empty array of token ids; give at least one");
        }
        int[] ids = new int[array.size()];
        for (int i = 0; i < ids.length; i++) {
            JsonNode id = array.get(i);
            if (!id.isIntegralNumber() || !id.canConvertToInt()) {
                throw ApiError.invalid("prompt", where + "[" + i + "] must be a token id (a whole number), was " + id);
            }
            ids[i] = id.intValue();
        }
        return ids;
    }

    private static List<String> stops(JsonNode node) {
        if (node == null || node.isNull()) {
            return List.of();
        }
        List<String> out = new ArrayList<>();
        if (node.isTextual()) {
            out.add(node.textValue());
        } else if (node.isArray()) {
            for (JsonNode s : node) {
                if (!s.isTextual()) {
                    throw ApiError.invalid("stop", "stop must be a string or an array of strings, had " + s);
                }
                out.add(s.textValue());
            }
        } else {
            throw ApiError.invalid("stop", "stop must be a string or an array of strings, was " + node);
        }
        for (String s : out) {
            if (s.isEmpty()) {
                throw ApiError.invalid("stop", "a stop string is empty; give at least one character");
            }
        }
        return List.copyOf(out);
    }

    private static String firstLine(String message) {
        if (message == null) {
            return "";
        }
        int nl = message.indexOf('\n');
        return nl < 0 ? message : message.substring(0, nl);
    }
}
