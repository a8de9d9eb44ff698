package dev.kvq.cli;

import dev.kvq.KvqException;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.Runtimes;
import dev.kvq.generate.Tokenizer;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import dev.kvq.serve.KvqServer;
import java.io.IOException;
import java.io.PrintWriter;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.UnknownHostException;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;
import picocli.CommandLine.Model.CommandSpec;

/** {@code kvq serve}: the OpenAI-compatible completions server. */
@Command(name = "serve", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Serve a model over HTTP with OpenAI's completions API (POST /v1/completions, GET /v1/models), "
            + "GET /health and Prometheus metrics at GET /metrics. Requests share one continuously batched decode loop; "
            + "each reserves the bytes its cache can reach (prompt plus max_tokens) from --kv-memory and waits in a "
            + "bounded queue while they do not fit. With --placement device the caches live in the runtime's memory "
            + "and --kv-memory bounds what they take there. Runs until stopped (Ctrl-C)."})
final class ServeCommand implements Callable<Integer>, CheckedCommand {
    @Mixin
    ModelOptions model;

    @Mixin
    KvOptions kv;

    @Option(names = "--host", defaultValue = "127.0.0.1", paramLabel = "ADDRESS",
            description = "Address to listen on (0.0.0.0: every interface).")
    String host;

    @Option(names = "--port", defaultValue = "8000", paramLabel = "N", converter = Checks.NotNegative.class,
            description = "Port to listen on; 0 picks a free one (printed at start).")
    int port;

    @Option(names = "--kv-memory", defaultValue = "1GiB", paramLabel = "SIZE",
            description = "Budget of all running sequences' KV caches together, as kvq counts their bytes (e.g. 8GiB, "
                + "512MiB); under --placement device, of the device store (every sequence there has room for the "
                + "longest reservation).")
    String kvMemory;

    @Option(names = "--max-queue", defaultValue = "256", paramLabel = "N", converter = Checks.NotNegative.class,
            description = "Requests that may wait for KV memory; one more is refused with 429.")
    int maxQueue;

    @Option(names = "--max-batch", defaultValue = "256", paramLabel = "N", converter = Checks.Positive.class,
            description = "Sequences decoded together at most.")
    int maxBatch;

    @Option(names = "--model-id", paramLabel = "NAME",
            description = "The model's name in /v1/models and in requests (default: the model directory's name).")
    String modelId;

    @Spec
    CommandSpec spec;

    @Override
    public Output check() {
        kv.check(false);
        ModelDir dir = model.dir();
        KvQuantConfig config = kv.resolve();
        CacheFactory caches = kv.caches(config, dir);
        Runtimes.discover().get(model.runtimeOr(config.runtime()));
        Checks.range("--port", port, 0, 65535, "(0: any free port)");
        long budget = Sizes.parse("--kv-memory", kvMemory);
        long smallest = caches.bytesHeldAfter(dir.config().shape(), 1, 0, 0);
        Checks.require(budget >= smallest, "--kv-memory " + kvMemory + " (" + budget + " bytes) holds no sequence: one "
                + "of a single token needs " + smallest + " bytes under " + caches.describe() + "; give more");
        InetAddress address;
        try {
            address = InetAddress.getByName(host);
        } catch (UnknownHostException e) {
            throw KvqException.config("--host " + host + " is not an address of this machine or a name that resolves; "
                    + "give one such as 127.0.0.1 or 0.0.0.0");
        }
        if (port != 0) {
            try (ServerSocket probe = new ServerSocket()) {
                probe.setReuseAddress(true);
                probe.bind(new InetSocketAddress(address, port));
            } catch (IOException e) {
                throw KvqException.config("--port " + port + " cannot be bound on " + host + " (" + e.getMessage()
                        + "); another program may listen there: give another --port, or 0 for any free one");
            }
        }
        return null;
    }

    @Override
    public Integer call() throws InterruptedException {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        ModelDir dir = model.dir();
        KvQuantConfig config = kv.resolve();
        CacheFactory caches = kv.caches(config, dir);
        long budget = Sizes.parse("--kv-memory", kvMemory);
        String id = modelId != null ? modelId : dir.name();
        try (Decoder decoder = model.open(dir, config.runtime(), config.device());
             Tokenizer tokenizer = model.tokenizer(dir);
             KvqServer server = KvqServer.start(decoder, tokenizer, caches, new KvqServer.Settings(host, port, id,
                     budget, maxQueue, maxBatch))) {
            int context = Checks.positions(dir);
            long full = context == Integer.MAX_VALUE ? 0 : server.reservation(context, 0);
            err.printf("kvq: %s on %s (%s), cache: %s; --kv-memory %,d bytes%s%n", id, decoder.device(),
                    model.runtimeOr(config.runtime()), caches.describe(), budget, full == 0 ? ""
                    : String.format(" (%d sequences of the whole %,d-token context)", budget / full, context));
            out.printf("kvq serve: listening on http://%s:%d/v1%n", host, server.port());
            out.flush();
            err.flush();
            Thread stop = new Thread(server::close, "kvq-serve-stop");
            Runtime.getRuntime().addShutdownHook(stop);
            server.awaitClose();
        }
        return 0;
    }
}
