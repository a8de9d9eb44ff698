package dev.kvq.serve;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Timer;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.util.concurrent.TimeUnit;

/** The server's metrics in a Micrometer registry, scraped in Prometheus' text format at {@code GET /metrics}. */
final class ServerMetrics {
    private final PrometheusMeterRegistry registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    private final Counter generated = Counter.builder("kvq.generated.tokens")
            .description("Tokens generated, all requests together").register(registry);
    private final Counter rejected = Counter.builder("kvq.rejected.requests")
            .description("Requests refused with 429 because the queue was full").register(registry);
    private final Timer firstToken = Timer.builder("kvq.time.to.first.token")
            .description("From a request's arrival to its first generated token").register(registry);
    private final Timer request = Timer.builder("kvq.request.duration")
            .description("From a request's arrival to its last token").register(registry);

    /** Gauges that read {@code engine}'s state when scraped. */
    void bind(BatchEngine engine) {
        Gauge.builder("kvq.kv.cache.held", engine, e -> e.snapshot().bytesHeld()).baseUnit("bytes")
                .description("Bytes the running sequences' KV caches hold now").register(registry);
        Gauge.builder("kvq.kv.cache.reserved", engine, e -> e.snapshot().bytesReserved()).baseUnit("bytes")
                .description("Bytes reserved by admitted requests (prompt plus max_tokens; the device store's under "
                        + "placement device)").register(registry);
        Gauge.builder("kvq.kv.cache.device", engine, e -> e.snapshot().deviceBytes()).baseUnit("bytes")
                .description("Bytes the caches hold in the runtime's memory (placement device; 0 on the host)")
                .register(registry);
        Gauge.builder("kvq.kv.memory.budget", engine, BatchEngine::budget).baseUnit("bytes")
                .description("The KV memory budget (--kv-memory)").register(registry);
        Gauge.builder("kvq.queue.depth", engine, e -> e.snapshot().waitingRequests())
                .description("Requests waiting for KV memory").register(registry);
        Gauge.builder("kvq.active.sequences", engine, e -> e.snapshot().activeSequences())
                .description("Sequences in the running batch").register(registry);
        Gauge.builder("kvq.tokens.per.second", engine, BatchEngine::tokensPerSecond)
                .description("Tokens generated per second over the last second").register(registry);
    }

    void generated() {
        generated.increment();
    }

    void rejected() {
        rejected.increment();
    }

    void firstToken(long nanos) {
        firstToken.record(nanos, TimeUnit.NANOSECONDS);
    }

    void completed(long nanos) {
        request.record(nanos, TimeUnit.NANOSECONDS);
    }

    String scrape() {
        return registry.scrape();
    }
}
