package dev.kvq.bench;

import dev.kvq.cache.KvCache;
import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.config.ModelShape;
import dev.kvq.generate.CacheFactory;
import dev.kvq.io.config.ConfigFiles;
import dev.kvq.tensor.KvView;
import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * A decode step's appends on one thread: every sequence's cache takes one new token in each layer, as {@link
 * dev.kvq.generate.DecodeSession} appends them (a cache's tail block takes single tokens in place). Prints
 * nanoseconds per (layer, sequence) append, keys and values together, for each of {@code rounds} rounds of
 * {@code steps} steps over fresh caches; the first rounds warm the JIT up.
 *
 * <pre>java --add-modules jdk.incubator.vector -cp kvq-bench/target/benchmarks.jar dev.kvq.bench.TokenAppendTime
 *     [batch=111] [steps=256] [rounds=8] [bits=4] [placement=device]</pre>
 */
public final class TokenAppendTime {
    private static final int LAYERS = 16;
    private static final int HEADS = 8;
    private static final int DIM = 64;

    private TokenAppendTime() {
    }

    public static void main(String[] args) {
        int batch = 111;
        int steps = 256;
        int rounds = 8;
        int bits = 4;
        String placement = "device";
        for (String a : args) {
            String[] kv = a.split("=", 2);
            switch (kv[0]) {
                case "batch" -> batch = Integer.parseInt(kv[1]);
                case "steps" -> steps = Integer.parseInt(kv[1]);
                case "rounds" -> rounds = Integer.parseInt(kv[1]);
                case "bits" -> bits = Integer.parseInt(kv[1]);
                case "placement" -> placement = kv[1];
                default -> throw new IllegalArgumentException("unknown argument " + a
                        + " (batch, steps, rounds, bits, placement)");
            }
        }
        ModelShape shape = new ModelShape(LAYERS, HEADS, DIM);
        CacheFactory factory = CacheFactory.quantized(KvCaches.spec(ConfigFiles.parse("placement: " + placement
                + "\n" + DeviceStepHostTime.perToken(bits)), shape));
        System.out.printf(Locale.ROOT, "# per-token K%dV%d, placement %s: %d sequences x %d layers of %d heads x %d, "
                + "%d steps per round%n", bits, bits, placement, batch, LAYERS, HEADS, DIM, steps);
        try (Arena arena = Arena.ofConfined()) {
            KvView token = KvView.allocate(arena, HEADS, 1, DIM);
            SplittableRandom random = new SplittableRandom(1);
            for (int h = 0; h < HEADS; h++) {
                for (int d = 0; d < DIM; d++) {
                    token.set(h, 0, d, (float) random.nextGaussian());
                }
            }
            for (int round = 0; round < rounds; round++) {
                List<KvCache> caches = new ArrayList<>();
                for (int b = 0; b < batch; b++) {
                    caches.add(factory.newCache());
                }
                long start = System.nanoTime();
                for (int s = 0; s < steps; s++) {
                    for (KvCache cache : caches) {
                        for (int l = 0; l < LAYERS; l++) {
                            cache.append(l, token, token);
                        }
                    }
                }
                double ns = (System.nanoTime() - start) / (double) steps / batch / LAYERS;
                System.out.printf(Locale.ROOT, "round %d: %.1f ns per (layer, sequence) append%n", round, ns);
                caches.forEach(KvCache::close);
            }
        }
    }
}
