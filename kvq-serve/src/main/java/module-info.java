/**
 * {@code kvq serve}: an OpenAI-compatible completions server over kvq's caches with continuous batching under a KV
 * memory budget, and its load benchmark. Only {@link dev.kvq.serve.KvqServer}, its settings and the benchmark are
 * exported; the engine and the HTTP handlers stay inside.
 */
module dev.kvq.serve {
    requires dev.kvq.generate;
    requires com.fasterxml.jackson.databind;
    requires io.helidon.webserver;
    requires io.helidon.http;
    requires io.helidon.common.media.type;
    requires micrometer.core;
    requires micrometer.registry.prometheus;
    requires java.net.http;
    requires HdrHistogram;

    exports dev.kvq.serve;

    opens dev.kvq.serve to com.fasterxml.jackson.databind;
}
