package dev.kvq.serve;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kvq.generate.Tokenizer;
import io.helidon.http.HeaderNames;
import io.helidon.http.Status;
import io.helidon.webserver.http.HttpRouting;
import io.helidon.webserver.http.ServerRequest;
import io.helidon.webserver.http.ServerResponse;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CancellationException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The HTTP endpoints: OpenAI's completions (whole or as server-sent events), the model list, health and Prometheus
 * metrics. Every refusal is a 4xx with OpenAI's error body; nothing a client sends produces a 500 or a stack trace.
 */
final class CompletionsApi {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final String EVENT_STREAM = "text/event-stream";
    private static final String APPLICATION_JSON = "application/json";

    private final BatchEngine engine;
    private final Tokenizer tokenizer;
    private final ServerMetrics metrics;
    private final String modelId;
    private final long created = System.currentTimeMillis() / 1000;
    private final AtomicLong ids = new AtomicLong();

    CompletionsApi(BatchEngine engine, Tokenizer tokenizer, ServerMetrics metrics, String modelId) {
        this.engine = engine;
        this.tokenizer = tokenizer;
        this.metrics = metrics;
        this.modelId = modelId;
    }

    void routes(HttpRouting.Builder routing) {
        routing.post("/v1/completions", this::completions)
                .get("/v1/models", this::models)
                .get("/health", this::health)
                .get("/metrics", this::metrics)
                .any(this::notFound)
                .error(ApiError.class, (req, res, e) -> error(res, e))
                .error(Throwable.class, (req, res, e) -> error(res, new ApiError(500, "server_error", null,
                        "internal error (" + e.getClass().getSimpleName() + ")")));
    }

    private void completions(ServerRequest req, ServerResponse res) {
        byte[] body = req.content().hasEntity() ? req.content().as(byte[].class) : new byte[0];
        if (body.length == 0) {
            throw ApiError.invalid(null, "the body is empty; send a JSON object with a prompt");
        }
        CompletionRequest request = CompletionRequest.parse(body);
        if (request.model() != null && !request.model().equals(modelId)) {
            throw new ApiError(404, "invalid_request_error", "model", "the model '" + request.model()
                    + "' does not exist; this server serves '" + modelId + "'");
        }
        Job job = engine.submit(request);
        String id = "cmpl-" + ids.incrementAndGet();
        if (request.stream()) {
            stream(res, job, id);
        } else {
            whole(res, job, id);
        }
    }

    private void whole(ServerResponse res, Job job, String id) {
        try {
            job.done.get();
        } catch (InterruptedException e) {
            job.cancel();
            Thread.currentThread().interrupt();
            throw new ApiError(503, "server_error", null, "the request was interrupted");
        } catch (CancellationException e) {
            throw new ApiError(503, "server_error", null, "the request was cancelled");
        } catch (ExecutionException e) {
            throw e.getCause() instanceof ApiError a ? a : new ApiError(500, "server_error", null, "internal error");
        }
        ObjectNode out = head(id);
        ArrayNode choices = out.putArray("choices");
        int promptTokens = 0;
        int completionTokens = 0;
        for (int i = 0; i < job.choices.size(); i++) {
            Job.Choice c = job.choices.get(i);
            promptTokens += c.promptIds.length;
            completionTokens += c.completionTokens;
            ObjectNode choice = choices.addObject();
            choice.put("index", i);
            choice.put("text", job.request.echo() ? promptText(job, i) + c.text : c.text);
            if (job.request.logprobs() >= 0) {
                List<Job.Choice.Scored> scored = new java.util.ArrayList<>(c.promptScores);
                scored.addAll(c.scores);
                logprobs(choice.putObject("logprobs"), scored, 0);
            } else {
                choice.putNull("logprobs");
            }
            choice.put("finish_reason", c.finishReason);
        }
        ObjectNode usage = out.putObject("usage");
        usage.put("prompt_tokens", promptTokens);
        usage.put("completion_tokens", completionTokens);
        usage.put("total_tokens", promptTokens + completionTokens);
        send(res, 200, out);
    }

    /**
     * Server-sent events, one per token as OpenAI sends them, then {@code [DONE]}. A client that goes away cancels
     * the request: the engine drops its sequences and frees their caches at the next step.
     */
    private void stream(ServerResponse res, Job job, String id) {
        res.status(Status.OK_200);
        res.header(HeaderNames.CONTENT_TYPE, EVENT_STREAM);
        res.header(HeaderNames.CACHE_CONTROL, "no-cache");
        int[] offsets = new int[job.choices.size()];
        try (OutputStream out = res.outputStream()) {
            if (job.request.echo()) {
                for (int i = 0; i < job.choices.size(); i++) {
                    String prompt = promptText(job, i);
                    event(out, chunk(id, i, prompt, null));
                    offsets[i] += prompt.length();
                }
            }
            int open = job.choices.size();
            while (open > 0) {
                Job.Event event = job.events.take();
                switch (event) {
                    case Job.Piece p -> {
                        ObjectNode chunk = chunk(id, p.index(), p.text(), null);
                        if (p.logprob() != null) {
                            logprobs(((ObjectNode) chunk.get("choices").get(0)).putObject("logprobs"),
                                    List.of(p.logprob()), offsets[p.index()]);
                        }
                        offsets[p.index()] += p.text().length();
                        event(out, chunk);
                    }
                    case Job.Finished f -> {
                        event(out, chunk(id, f.index(), "", f.reason()));
                        open--;
                    }
                    case Job.Failed f -> {
                        event(out, errorBody(f.error()));
                        open = 0;
                    }
                }
            }
            out.write("data: [DONE]\n\n".getBytes(StandardCharsets.UTF_8));
            out.flush();
        } catch (IOException | UncheckedIOException e) {
            job.cancel();
        } catch (InterruptedException e) {
            job.cancel();
            Thread.currentThread().interrupt();
        } catch (RuntimeException e) {
            // the connection broke under the writer (Helidon reports a closed socket unchecked)
            job.cancel();
        }
    }

    private ObjectNode chunk(String id, int index, String text, String finishReason) {
        ObjectNode out = head(id);
        ObjectNode choice = out.putArray("choices").addObject();
        choice.put("index", index);
        choice.put("text", text);
        choice.putNull("logprobs");
        if (finishReason == null) {
            choice.putNull("finish_reason");
        } else {
            choice.put("finish_reason", finishReason);
        }
        return out;
    }

    private static void event(OutputStream out, ObjectNode json) throws IOException {
        out.write(("data: " + JSON.writeValueAsString(json) + "\n\n").getBytes(StandardCharsets.UTF_8));
        out.flush();
    }

    private ObjectNode head(String id) {
        ObjectNode out = JSON.createObjectNode();
        out.put("id", id);
        out.put("object", "text_completion");
        out.put("created", System.currentTimeMillis() / 1000);
        out.put("model", modelId);
        return out;
    }

    /** OpenAI's logprobs object: tokens, their log-probabilities, the top alternatives, and text offsets. */
    private static void logprobs(ObjectNode node, List<Job.Choice.Scored> scored, int offset) {
        ArrayNode tokens = node.putArray("tokens");
        ArrayNode logprobs = node.putArray("token_logprobs");
        ArrayNode top = node.putArray("top_logprobs");
        ArrayNode offsets = node.putArray("text_offset");
        for (Job.Choice.Scored s : scored) {
            tokens.add(s.token());
            offsets.add(offset);
            offset += s.token().length();
            if (Double.isNaN(s.logprob())) {
                logprobs.addNull();
                top.addNull();
                continue;
            }
            logprobs.add(s.logprob());
            ObjectNode alternatives = top.addObject();
            for (Job.Choice.Alternative a : s.top()) {
                if (!alternatives.has(a.token())) {
                    alternatives.put(a.token(), a.logprob());
                }
            }
        }
    }

    private String promptText(Job job, int index) {
        return switch (job.request.prompts().get(index)) {
            case Prompt.Text t -> t.text();
            case Prompt.Tokens t -> {
                synchronized (tokenizer) {
                    yield tokenizer.decode(t.ids());
                }
            }
        };
    }

    private void models(ServerRequest req, ServerResponse res) {
        ObjectNode out = JSON.createObjectNode();
        out.put("object", "list");
        ObjectNode model = out.putArray("data").addObject();
        model.put("id", modelId);
        model.put("object", "model");
        model.put("created", created);
        model.put("owned_by", "kvq");
        send(res, 200, out);
    }

    private void health(ServerRequest req, ServerResponse res) {
        BatchEngine.Snapshot s = engine.snapshot();
        ObjectNode out = JSON.createObjectNode();
        out.put("status", "ok");
        out.put("model", modelId);
        out.put("active_sequences", s.activeSequences());
        out.put("waiting_requests", s.waitingRequests());
        out.put("kv_bytes_held", s.bytesHeld());
        out.put("kv_bytes_reserved", s.bytesReserved());
        out.put("kv_device_bytes", s.deviceBytes());
        out.put("kv_memory_bytes", engine.budget());
        out.put("reservation_exceeded", s.reservationExceeded());
        send(res, 200, out);
    }

    private void metrics(ServerRequest req, ServerResponse res) {
        res.status(Status.OK_200);
        res.header(HeaderNames.CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
        res.send(metrics.scrape().getBytes(StandardCharsets.UTF_8));
    }

    private void notFound(ServerRequest req, ServerResponse res) {
        error(res, new ApiError(404, "invalid_request_error", null, "no endpoint " + req.prologue().method().text()
                + " " + req.path().path() + "; this server has POST /v1/completions, GET /v1/models, GET /health and "
                + "GET /metrics"));
    }

    private void error(ServerResponse res, ApiError e) {
        send(res, e.status(), errorBody(e));
    }

    private static ObjectNode errorBody(ApiError e) {
        ObjectNode out = JSON.createObjectNode();
        ObjectNode error = out.putObject("error");
        error.put("message", e.getMessage());
        error.put("type", e.type());
        if (e.param() == null) {
            error.putNull("param");
        } else {
            error.put("param", e.param());
        }
        error.putNull("code");
        return out;
    }

    private static void send(ServerResponse res, int status, ObjectNode body) {
        res.status(Status.create(status));
        res.header(HeaderNames.CONTENT_TYPE, APPLICATION_JSON);
        try {
            res.send(JSON.writeValueAsBytes(body));
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            throw new UncheckedIOException(e);
        }
    }
}
