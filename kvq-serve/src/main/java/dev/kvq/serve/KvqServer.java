package dev.kvq.serve;

import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.spi.Decoder;
import io.helidon.webserver.WebServer;
import java.util.concurrent.CountDownLatch;

/**
 * {@code kvq serve}: an OpenAI-compatible HTTP server ({@code POST /v1/completions}, {@code GET /v1/models},
 * {@code GET /health}, {@code GET /metrics}) over one model, whose requests share a continuously batched decode loop
 * under a KV memory budget. The caller keeps ownership of the decoder and tokenizer and closes them after this server.
 */
public final class KvqServer implements AutoCloseable {
    /**
     * Where to listen and what to admit.
     *
     * @param host the address to bind (127.0.0.1 unless told otherwise)
     * @param port the port; 0 picks a free one ({@link #port()} tells which)
     * @param modelId the name {@code /v1/models} lists and requests may give as {@code model}
     * @param kvMemoryBytes the budget of every running sequence's KV cache together, as kvq counts bytes
     * @param maxQueue requests that may wait for memory; one more is refused with 429
     * @param maxBatch sequences decoded together at most
     */
    public record Settings(String host, int port, String modelId, long kvMemoryBytes, int maxQueue, int maxBatch) {
        public Settings {
            if (port < 0 || port > 65535) {
                throw new IllegalArgumentException("port must be between 0 and 65535, was " + port);
            }
            if (kvMemoryBytes < 1) {
                throw new IllegalArgumentException("kvMemoryBytes must be positive, was " + kvMemoryBytes);
            }
            if (maxQueue < 0 || maxBatch < 1) {
                throw new IllegalArgumentException("maxQueue must be 0 or more and maxBatch positive, were " + maxQueue
                        + " and " + maxBatch);
            }
        }
    }

    /**
     * What the server holds and does now: the bytes the running caches hold and reserve (reserved: what the budget
     * counts, the device store's bytes under placement device), the bytes they hold in the runtime's memory (placement
     * device, else 0), sequences running and requests waiting, how often a cache held more than it reserved (a defect
     * if ever above 0), the most sequences that ran together since the start, and the tokens generated since the
     * start.
     */
    public record State(long kvBytesHeld, long kvBytesReserved, long kvDeviceBytes, int activeSequences,
                        int waitingRequests, long reservationExceeded, int peakActiveSequences, long generatedTokens) {
    }

    private final BatchEngine engine;
    private final WebServer server;
    private final CountDownLatch stopped = new CountDownLatch(1);
    private boolean closed;

    private KvqServer(BatchEngine engine, WebServer server) {
        this.engine = engine;
        this.server = server;
    }

    /** Starts serving {@code decoder} with caches from {@code caches}; returns once the port is bound. */
    public static KvqServer start(Decoder decoder, Tokenizer tokenizer, CacheFactory caches, Settings settings) {
        ServerMetrics metrics = new ServerMetrics();
        BatchEngine engine = new BatchEngine(decoder, tokenizer, caches, new BatchEngine.Limits(settings.kvMemoryBytes(),
                settings.maxQueue(), settings.maxBatch()), metrics);
        try {
            CompletionsApi api = new CompletionsApi(engine, tokenizer, metrics, settings.modelId());
            WebServer server = WebServer.builder()
                    .host(settings.host())
                    .port(settings.port())
                    .shutdownHook(false)
                    .maxPayloadSize(64L << 20)
                    .routing(api::routes)
                    .build()
                    .start();
            return new KvqServer(engine, server);
        } catch (RuntimeException e) {
            engine.close();
            throw e;
        }
    }

    /** The port the server listens on. */
    public int port() {
        return server.port();
    }

    /** The engine's bytes, sequences and queue now. */
    public State state() {
        BatchEngine.Snapshot s = engine.snapshot();
        return new State(s.bytesHeld(), s.bytesReserved(), s.deviceBytes(), s.activeSequences(), s.waitingRequests(),
                s.reservationExceeded(), s.peakActiveSequences(), s.generatedTokens());
    }

    /**
     * The bytes one sequence of {@code promptTokens} tokens reserves when it asks for {@code maxTokens} new ones
     * (exactly what its cache can reach; under placement device, what a store of it alone takes).
     */
    public long reservation(int promptTokens, int maxTokens) {
        return engine.reservation(promptTokens, maxTokens);
    }

    /** How many sequences of {@code promptTokens} plus {@code maxTokens} new tokens the budget admits at once. */
    public long capacity(int promptTokens, int maxTokens) {
        return engine.capacity(promptTokens, maxTokens);
    }

    /** Blocks until {@link #close()} has run. */
    public void awaitClose() throws InterruptedException {
        stopped.await();
    }

    /** Stops listening, fails what still runs or waits, and frees every cache; idempotent. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        try {
            server.stop();
        } finally {
            engine.close();
            stopped.countDown();
        }
    }
}
