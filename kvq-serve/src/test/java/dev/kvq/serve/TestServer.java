package dev.kvq.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.Placement;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Generator;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.SamplingParams;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.Tokenizers;
import dev.kvq.generate.UnknownChars;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.testkit.Repo;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.List;
import java.util.function.BooleanSupplier;
import java.util.function.UnaryOperator;

/**
 * A {@code kvq serve} on the demo model at a free port, a JDK HTTP client for it, and a second decoder that computes
 * what {@code kvq generate} gives for the same prompt and configuration (the server's decoder is its engine's alone).
 */
final class TestServer implements AutoCloseable {
    static final ObjectMapper JSON = new ObjectMapper();
    static final ModelDir MODEL = ModelDir.open(Repo.demoModel());

    final CacheFactory caches;
    final KvqServer server;
    final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
    private final Decoder decoder;
    private final Tokenizer tokenizer;
    private final Decoder referenceDecoder;
    private final Tokenizer referenceTokenizer;

    /** KVTuner's per-token 4-bit keys and values with the vanilla backend, or the float32 cache when null. */
    static CacheFactory perToken4() {
        return perToken4(Placement.HOST);
    }

    /** Per-token KV4 as {@link #perToken4()}, its caches where {@code placement} says. */
    static CacheFactory perToken4(Placement placement) {
        return CacheFactory.quantized(KvCaches.spec(KvQuantConfig.perToken(4, 4).backend("vanilla")
                .placement(placement).build(), MODEL.config().shape()));
    }

    TestServer(CacheFactory caches, long kvMemoryBytes, int maxQueue, int maxBatch) {
        this(caches, kvMemoryBytes, maxQueue, maxBatch, d -> d);
    }

    /** As above, the server's decoder wrapped by {@code wrap} (the reference decoder is left as it is). */
    TestServer(CacheFactory caches, long kvMemoryBytes, int maxQueue, int maxBatch, UnaryOperator<Decoder> wrap) {
        this.caches = caches;
        this.decoder = wrap.apply(Runtimes.discover().get("onnx").open(MODEL, "cpu"));
        this.tokenizer = Tokenizers.load(MODEL, UnknownChars.ERROR);
        this.referenceDecoder = Runtimes.discover().get("onnx").open(MODEL, "cpu");
        this.referenceTokenizer = Tokenizers.load(MODEL, UnknownChars.ERROR);
        this.server = KvqServer.start(decoder, tokenizer, caches, new KvqServer.Settings("127.0.0.1", 0, MODEL.name(),
                kvMemoryBytes, maxQueue, maxBatch));
    }

    URI uri(String path) {
        return URI.create("http://127.0.0.1:" + server.port() + path);
    }

    /** What kvq generate gives for {@code prompts} as one call (the prompts' indices seed their samplers). */
    List<Generator.Result> generate(List<String> prompts, int maxTokens, SamplingParams sampling, List<String> stop) {
        return new Generator(referenceDecoder, referenceTokenizer, caches).generate(prompts,
                new Generator.Options(maxTokens, sampling, stop), null).results();
    }

    String generate(String prompt, int maxTokens, SamplingParams sampling) {
        return generate(List.of(prompt), maxTokens, sampling, List.of()).getFirst().text();
    }

    Decoder referenceDecoder() {
        return referenceDecoder;
    }

    Tokenizer referenceTokenizer() {
        return referenceTokenizer;
    }

    /** A POST of {@code body} to {@code path}; the status and the body as text. */
    HttpResponse<String> post(String path, String body) {
        return send(HttpRequest.newBuilder(uri(path)).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body)).build());
    }

    HttpResponse<String> get(String path) {
        return send(HttpRequest.newBuilder(uri(path)).GET().build());
    }

    private HttpResponse<String> send(HttpRequest request) {
        try {
            return http.send(request, HttpResponse.BodyHandlers.ofString());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(e);
        }
    }

    static JsonNode json(String text) {
        try {
            return JSON.readTree(text);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** A completions body with these fields (values already JSON). */
    static String body(Object... fieldsAndValues) {
        var node = JSON.createObjectNode();
        for (int i = 0; i < fieldsAndValues.length; i += 2) {
            node.set((String) fieldsAndValues[i], JSON.valueToTree(fieldsAndValues[i + 1]));
        }
        return node.toString();
    }

    /** Waits, up to a minute, until {@code condition} holds; fails naming {@code what} if it never does. */
    static void await(String what, BooleanSupplier condition) {
        long deadline = System.nanoTime() + Duration.ofMinutes(1).toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting until " + what);
            }
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new AssertionError(e);
            }
        }
    }

    /** Every cache closed, nothing reserved, running or waiting, and no cache ever past its reservation. */
    void awaitIdleAndEmpty() {
        await("the server is idle", () -> server.state().activeSequences() == 0
                && server.state().waitingRequests() == 0);
        KvqServer.State s = server.state();
        if (s.kvBytesHeld() != 0 || s.kvBytesReserved() != 0 || s.kvDeviceBytes() != 0 || s.reservationExceeded() != 0) {
            throw new AssertionError("the server holds cache memory after every request ended: " + s);
        }
    }

    @Override
    public void close() {
        try {
            server.close();
        } finally {
            decoder.close();
            tokenizer.close();
            referenceDecoder.close();
            referenceTokenizer.close();
        }
    }
}
