package dev.kvq.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kvq.KvqException;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.spi.Decoder;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import java.util.stream.Stream;
import org.HdrHistogram.Histogram;

/**
 * The load benchmark of {@code kvq serve}: for each cache configuration, a server under the same KV memory budget,
 * driven over HTTP by closed-loop clients (each sends its next streamed request when the last one ends) at each
 * concurrency. Measures tokens generated per second, the most sequences that ran at once, and percentiles of the time
 * to first token and of the whole request's latency.
 */
public final class LoadBench {
    private static final ObjectMapper JSON = new ObjectMapper();

    /**
     * What to run.
     *
     * @param kvMemoryBytes the budget every configuration's server gets
     * @param concurrency clients at once, one row each
     * @param requestsPerClient requests each client sends in a row
     * @param promptTokens tokens of every prompt (taken from the text at different offsets)
     * @param maxTokens new tokens every request asks for (greedy)
     * @param maxBatch the servers' --max-batch
     */
    public record Options(long kvMemoryBytes, List<Integer> concurrency, int requestsPerClient, int promptTokens,
                          int maxTokens, int maxBatch) {
        public Options {
            concurrency = List.copyOf(concurrency);
            if (concurrency.isEmpty() || requestsPerClient < 1 || promptTokens < 1 || maxTokens < 1) {
                throw KvqException.config("a load bench needs concurrencies, and at least one request per client, "
                        + "prompt token and new token");
            }
        }
    }

    /**
     * One configuration at one concurrency. Times are milliseconds.
     *
     * @param capacity the sequences the budget admits at once (as the server admits them)
     * @param peakSequences the most sequences that ran together
     */
    public record Row(String cache, int concurrency, int requests, long reservationBytes, long capacity,
                      int peakSequences, long tokens, double seconds, double tokensPerSecond, double ttftP50,
                      double ttftP90, double ttftP99, double latencyP50, double latencyP90, double latencyP99) {
    }

    private LoadBench() {
    }

    /**
     * Runs every configuration at every concurrency on {@code decoder}; prompts come from {@code text}'s tokens.
     * {@code onRow} hears of each row as it is measured.
     */
    public static List<Row> run(Decoder decoder, Tokenizer tokenizer, Map<String, CacheFactory> configs, String text,
                                Options options, Consumer<Row> onRow) {
        int[] tokens = tokenizer.encode(text);
        if (tokens.length < options.promptTokens() + 1) {
            throw KvqException.config("the text gives " + tokens.length + " tokens, fewer than a prompt of "
                    + options.promptTokens() + "; give a longer text or shorter prompts");
        }
        int maxClients = options.concurrency().stream().mapToInt(Integer::intValue).max().orElseThrow();
        List<Row> rows = new ArrayList<>();
        for (Map.Entry<String, CacheFactory> config : configs.entrySet()) {
            KvqServer.Settings settings = new KvqServer.Settings("127.0.0.1", 0, "bench", options.kvMemoryBytes(),
                    maxClients, options.maxBatch());
            try (KvqServer server = KvqServer.start(decoder, tokenizer, config.getValue(), settings)) {
                Client client = new Client(server, tokens, options);
                client.request(0); // warm-up
                for (int concurrency : options.concurrency()) {
                    Row row = client.level(config.getKey(), concurrency);
                    rows.add(row);
                    onRow.accept(row);
                }
            }
        }
        return rows;
    }

    /** The clients of one server. */
    private static final class Client {
        private final KvqServer server;
        private final int[] tokens;
        private final Options options;
        private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
        private final URI uri;
        private final AtomicInteger nextOffset = new AtomicInteger();

        Client(KvqServer server, int[] tokens, Options options) {
            this.server = server;
            this.tokens = tokens;
            this.options = options;
            this.uri = URI.create("http://127.0.0.1:" + server.port() + "/v1/completions");
        }

        Row level(String cache, int concurrency) {
            Histogram ttft = new Histogram(3);
            Histogram latency = new Histogram(3);
            AtomicBoolean running = new AtomicBoolean(true);
            AtomicInteger peak = new AtomicInteger();
            Thread watcher = Thread.ofVirtual().start(() -> {
                while (running.get()) {
                    peak.accumulateAndGet(server.state().activeSequences(), Math::max);
                    try {
                        Thread.sleep(1);
                    } catch (InterruptedException e) {
                        return;
                    }
                }
            });
            awaitIdle();
            long generatedBefore = server.state().generatedTokens();
            long start = System.nanoTime();
            try (ExecutorService clients = Executors.newVirtualThreadPerTaskExecutor()) {
                List<Future<List<long[]>>> futures = new ArrayList<>();
                for (int c = 0; c < concurrency; c++) {
                    futures.add(clients.submit(() -> {
                        List<long[]> times = new ArrayList<>();
                        for (int r = 0; r < options.requestsPerClient(); r++) {
                            times.add(request(nextOffset.incrementAndGet()));
                        }
                        return times;
                    }));
                }
                for (Future<List<long[]>> f : futures) {
                    for (long[] t : f.get()) {
                        ttft.recordValue(Math.max(1, t[0] / 1000));
                        latency.recordValue(Math.max(1, t[1] / 1000));
                    }
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new KvqException(dev.kvq.ErrorCode.RUNTIME_FAILURE, "the load bench was interrupted");
            } catch (ExecutionException e) {
                throw new KvqException(dev.kvq.ErrorCode.RUNTIME_FAILURE, "a bench request failed: "
                        + e.getCause().getMessage(), e.getCause());
            } finally {
                running.set(false);
                watcher.interrupt();
            }
            double seconds = (System.nanoTime() - start) / 1e9;
            awaitIdle();
            long generated = server.state().generatedTokens() - generatedBefore;
            long reservation = server.reservation(options.promptTokens(), options.maxTokens());
            return new Row(cache, concurrency, concurrency * options.requestsPerClient(), reservation,
                    server.capacity(options.promptTokens(), options.maxTokens()), peak.get(), generated, seconds,
                    generated / seconds,
                    ms(ttft, 50), ms(ttft, 90), ms(ttft, 99), ms(latency, 50), ms(latency, 90), ms(latency, 99));
        }

        /**
         * Waits for the engine to publish the step that ended the last request: it counts a step's tokens once the
         * step is over, which may be after its client has read the last one.
         */
        private void awaitIdle() {
            while (server.state().activeSequences() > 0) {
                Thread.onSpinWait();
            }
        }

        /** One streamed request; nanoseconds to its first token and to its end. */
        long[] request(int index) {
            int span = tokens.length - options.promptTokens();
            int from = (int) ((index * 7919L) % span);
            ObjectNode body = JSON.createObjectNode();
            var prompt = body.putArray("prompt");
            for (int i = from; i < from + options.promptTokens(); i++) {
                prompt.add(tokens[i]);
            }
            body.put("max_tokens", options.maxTokens());
            body.put("temperature", 0);
            body.put("stream", true);
            HttpRequest request = HttpRequest.newBuilder(uri).header("Content-Type", "application/json")
                    .POST(HttpRequest.BodyPublishers.ofString(body.toString())).build();
            long start = System.nanoTime();
            long first = -1;
            try {
                HttpResponse<Stream<String>> r = http.send(request, HttpResponse.BodyHandlers.ofLines());
                try (Stream<String> lines = r.body()) {
                    if (r.statusCode() != 200) {
                        throw new IllegalStateException("status " + r.statusCode() + ": " + String.join("\n",
                                lines.toList()));
                    }
                    for (Iterator<String> it = lines.iterator(); it.hasNext(); ) {
                        String line = it.next();
                        if (first < 0 && line.startsWith("data: {")) {
                            JsonNode chunk = JSON.readTree(line.substring(6));
                            if (!chunk.at("/choices/0/text").asText().isEmpty()) {
                                first = System.nanoTime() - start;
                            }
                        }
                    }
                }
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException(e);
            }
            long end = System.nanoTime() - start;
            return new long[] {first < 0 ? end : first, end};
        }
    }

    private static double ms(Histogram h, double percentile) {
        return h.getValueAtPercentile(percentile) / 1000.0;
    }
}
