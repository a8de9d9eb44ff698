package dev.kvq.serve;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kvq.generate.SamplingParams;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.generate.spi.ForwardingDecoder;
import dev.kvq.generate.spi.Step;
import dev.kvq.generate.spi.StepInput;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.LockSupport;
import java.util.stream.Stream;
import dev.kvq.config.Placement;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Many clients at once, of mixed lengths, some of them cancelling: each finished request gets exactly what it gets
 * alone, admission never reserves more than the budget nor does a cache hold more than it reserved, and when all is
 * done every byte of cache has been freed. Under placement host and placement device (the caches mirrored in ONNX
 * Runtime's memory, the store laid out again whenever a sequence joins or leaves, and the budget bounding it).
 */
class ConcurrencyTest {
    private static final String TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, "
            + "and Juliet is the sun.\n";

    /** One client's request. */
    private record Call(String prompt, int maxTokens, double temperature, long seed, boolean stream, boolean cancel) {
        String body() {
            return TestServer.body("prompt", prompt, "max_tokens", maxTokens, "temperature", temperature, "seed", seed,
                    "stream", stream);
        }
    }

    @ParameterizedTest
    @EnumSource(Placement.class)
    void concurrentClientsGetWhatTheyGetAloneAndEveryCacheIsFreed(Placement placement) throws Exception {
        // room for a few of these sequences at a time: the others wait in the queue
        try (TestServer server = new TestServer(TestServer.perToken4(placement), 400_000, 64, 64)) {
            List<Call> calls = new ArrayList<>();
            for (int i = 0; i < 24; i++) {
                String prompt = TEXT.substring(i % 7, 8 + (i * 5) % 60);
                int maxTokens = 10 + (i * 37) % 140;
                calls.add(new Call(prompt, maxTokens, i % 3 == 0 ? 0 : 0.8, i, i % 2 == 0, i % 4 == 1));
            }
            ConcurrentLinkedQueue<String> violations = new ConcurrentLinkedQueue<>();
            AtomicBoolean running = new AtomicBoolean(true);
            Thread watcher = Thread.ofVirtual().start(() -> {
                while (running.get()) {
                    KvqServer.State s = server.server.state();
                    // on the device the budget bounds the store, which holds exactly what was reserved for it
                    boolean over = placement == Placement.HOST ? s.kvBytesHeld() > s.kvBytesReserved()
                            : s.kvDeviceBytes() != s.kvBytesReserved() || s.activeSequences() > 0 && s.kvDeviceBytes() == 0;
                    if (s.kvBytesReserved() > 400_000 || over || s.reservationExceeded() > 0) {
                        if (violations.size() < 3) {
                            violations.add(s.toString());
                        }
                    }
                    Thread.onSpinWait();
                }
            });
            List<String> results = new ArrayList<>();
            try (ExecutorService clients = Executors.newVirtualThreadPerTaskExecutor()) {
                List<Future<String>> futures = new ArrayList<>();
                for (Call c : calls) {
                    futures.add(clients.submit(() -> run(server, c)));
                }
                for (Future<String> f : futures) {
                    results.add(f.get());
                }
            } finally {
                running.set(false);
                watcher.join();
            }
            assertTrue(violations.isEmpty(), "reserved past the budget or held past the reservation: " + violations);
            for (int i = 0; i < calls.size(); i++) {
                Call c = calls.get(i);
                if (c.cancel()) {
                    continue;
                }
                String alone = server.generate(c.prompt(), c.maxTokens(), new SamplingParams(c.temperature(), 0, 1,
                        c.seed()));
                assertEquals(alone, results.get(i), "client " + i + " " + c);
            }
            server.awaitIdleAndEmpty();
            assertTrue(server.server.state().peakActiveSequences() > 1, "sequences were batched together: "
                    + server.server.state());
        }
    }

    /** The completion's text; a cancelling client reads one event of its stream and hangs up. */
    private static String run(TestServer server, Call c) throws IOException, InterruptedException {
        HttpRequest request = HttpRequest.newBuilder(server.uri("/v1/completions"))
                .POST(HttpRequest.BodyPublishers.ofString(c.body())).build();
        if (!c.stream()) {
            HttpResponse<String> r = server.http.send(request, HttpResponse.BodyHandlers.ofString());
            assertEquals(200, r.statusCode(), r.body());
            return TestServer.json(r.body()).at("/choices/0/text").asText();
        }
        HttpResponse<Stream<String>> r = server.http.send(request, HttpResponse.BodyHandlers.ofLines());
        assertEquals(200, r.statusCode());
        StringBuilder text = new StringBuilder();
        try (Stream<String> lines = r.body()) {
            Iterator<String> it = lines.iterator();
            while (it.hasNext()) {
                String line = it.next();
                if (!line.startsWith("data: ") || line.equals("data: [DONE]")) {
                    continue;
                }
                if (c.cancel()) {
                    return null;
                }
                text.append(TestServer.json(line.substring(6)).at("/choices/0/text").asText());
            }
        } catch (UncheckedIOException e) {
            throw e.getCause();
        }
        return text.toString();
    }

    @Test
    void aClientThatHangsUpFreesItsCacheWithoutWaitingForItsTokens() throws Exception {
        // decode steps held to at least 5 ms, so that 1,000 tokens take 5 s or more: the demo model alone made them
        // all on a loaded machine before the server's next write found the client gone
        try (TestServer server = new TestServer(TestServer.perToken4(), 8L << 20, 8, 8, Paced::new)) {
            HttpRequest request = HttpRequest.newBuilder(server.uri("/v1/completions"))
                    .POST(HttpRequest.BodyPublishers.ofString(TestServer.body("prompt", "ROMEO:\n", "max_tokens", 1000,
                            "temperature", 0, "stream", true))).build();
            HttpResponse<Stream<String>> r = server.http.send(request, HttpResponse.BodyHandlers.ofLines());
            try (Stream<String> lines = r.body()) {
                assertTrue(lines.anyMatch(l -> l.startsWith("data: {")), "a first event");
            }
            server.awaitIdleAndEmpty();
            long generated = server.server.state().generatedTokens();
            assertTrue(generated < 1000, "the sequence stopped when its client left, after " + generated + " tokens");
        }
    }

    /** With the budget taken and the queue full, one more request is refused with 429, and nothing leaks. */
    @Test
    void aFullQueueRefusesWith429() throws Exception {
        long oneLong;
        try (TestServer probe = new TestServer(TestServer.perToken4(), 8L << 20, 1, 8)) {
            oneLong = probe.server.reservation(7, 1000);
        }
        try (TestServer server = new TestServer(TestServer.perToken4(), oneLong, 1, 8)) {
            String longRequest = TestServer.body("prompt", "ROMEO:\n", "max_tokens", 1000, "temperature", 0,
                    "stream", true);
            HttpRequest request = HttpRequest.newBuilder(server.uri("/v1/completions"))
                    .POST(HttpRequest.BodyPublishers.ofString(longRequest)).build();
            HttpResponse<Stream<String>> running = server.http.send(request, HttpResponse.BodyHandlers.ofLines());
            TestServer.await("the first request runs", () -> server.server.state().activeSequences() == 1);
            var waiting = server.http.sendAsync(request, HttpResponse.BodyHandlers.ofLines());
            TestServer.await("the second request waits", () -> server.server.state().waitingRequests() == 1);
            HttpResponse<String> refused = server.post("/v1/completions", longRequest);
            assertEquals(429, refused.statusCode(), refused.body());
            JsonNode error = TestServer.json(refused.body()).get("error");
            assertTrue(error.get("message").asText().contains("--max-queue 1"), error.toString());
            running.body().close();
            HttpResponse<Stream<String>> second = waiting.get();
            second.body().close();
            server.awaitIdleAndEmpty();
        }
    }

    /** {@code inner} with every decode step (one new token per sequence) taking at least 5 ms. */
    private static final class Paced extends ForwardingDecoder {
        Paced(Decoder inner) {
            super(inner);
        }

        @Override
        public Step forward(StepInput input) {
            long start = System.nanoTime();
            Step step = delegate.forward(input);
            if (input.tokens() == 1) {
                long left = 5_000_000 - (System.nanoTime() - start);
                if (left > 0) {
                    LockSupport.parkNanos(left);
                }
            }
            return step;
        }
    }
}
