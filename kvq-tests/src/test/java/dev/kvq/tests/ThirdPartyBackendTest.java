package dev.kvq.tests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kvq.cache.quantized.CacheSpec;
import dev.kvq.cache.quantized.KvCaches;
import dev.kvq.cache.quantized.QuantizedKvCache;
import dev.kvq.config.KvQuantConfig;
import dev.kvq.config.ModelShape;
import dev.kvq.discovery.KvBackends;
import dev.kvq.discovery.ProviderRegistry;
import dev.kvq.spi.QuantizerProvider;
import dev.kvq.tensor.KvView;
import java.io.File;
import java.io.IOException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A quantizer written only against kvq's SPI, compiled into its own jar during the test, is discovered by name
 * and used by the cache with no change to kvq's code: on the class path (a class loader over the jar) and on the
 * module path (the real {@code kvq} command in a child JVM).
 */
class ThirdPartyBackendTest {
    private static final ModelShape SHAPE = new ModelShape(2, 2, 64);

    @TempDir
    Path work;

    @Test
    void discoveredOnTheClassPathAndUsedByTheCache() throws IOException {
        Path jar = PluginJars.build("absmax", "com.example.kvq.absmax.AbsmaxProvider", work);
        try (URLClassLoader loader = new URLClassLoader(new URL[] {jar.toUri().toURL()}, getClass().getClassLoader())) {
            ProviderRegistry<QuantizerProvider> backends = KvBackends.discover(loader);
            assertTrue(backends.names().containsAll(List.of("vanilla", "example-absmax")), backends.names().toString());
            assertEquals("class path", backends.get("example-absmax").origin());

            KvQuantConfig config = KvQuantConfig.perToken(8, 4).backend("example-absmax").asym(false).build();
            CacheSpec spec = KvCaches.spec(config, SHAPE, backends);
            float[] x = new float[2 * 40 * 64];
            Random rnd = new Random(11);
            for (int i = 0; i < x.length; i++) {
                x[i] = (float) rnd.nextGaussian();
            }
            KvView in = KvView.of(x, 2, 40, 64);
            try (QuantizedKvCache cache = spec.newCache()) {
                cache.append(0, in, in);
                float[] k = new float[x.length];
                float[] v = new float[x.length];
                cache.materialize(0, KvView.of(k, 2, 40, 64), KvView.of(v, 2, 40, 64));
                // the plugin's absmax rounding, computed here: every value comes back as round(x / s) * s, s = amax / qmax
                float[] expectedK = absmax(x, 64, 8);
                float[] expectedV = absmax(x, 64, 4);
                for (int i = 0; i < x.length; i++) {
                    assertEquals(expectedK[i], k[i], "8-bit key " + i);
                    assertEquals(expectedV[i], v[i], "4-bit value " + i);
                }
                long keys = 2 * 40 * 64 * 8 / 8 + 80 * 8;   // codes + (scale, zero) of 80 rows
                long values = 2 * 40 * 64 * 4 / 8 + 80 * 8;
                long residual = 2 * 2 * (2 * 64 * 4);       // 2 layers x (K, V) x one token of capacity
                assertEquals(keys + values + residual, cache.bytesHeld(), "bytes held");
            }
        }
    }

    /** Symmetric absmax per row of {@code d}, as the example plugin defines it. */
    private static float[] absmax(float[] x, int d, int bits) {
        int qmax = (1 << (bits - 1)) - 1;
        float[] out = new float[x.length];
        for (int row = 0; row < x.length; row += d) {
            float amax = 1e-8f;
            for (int i = 0; i < d; i++) {
                amax = Math.max(amax, Math.abs(x[row + i]));
            }
            float s = amax / qmax;
            for (int i = 0; i < d; i++) {
                out[row + i] = (float) Math.round(x[row + i] / s) * s;
            }
        }
        return out;
    }

    @Test
    void aBrokenProviderIsReportedAndTheOthersStillLoad() throws IOException {
        Path broken = PluginJars.build("broken", "com.example.kvq.broken.BrokenProvider", work);
        Path absmax = PluginJars.build("absmax", "com.example.kvq.absmax.AbsmaxProvider", work);
        try (URLClassLoader loader = new URLClassLoader(new URL[] {broken.toUri().toURL(), absmax.toUri().toURL()},
                getClass().getClassLoader())) {
            ProviderRegistry<QuantizerProvider> backends = KvBackends.discover(loader);
            assertTrue(backends.names().contains("example-absmax"));
            assertTrue(backends.names().contains("vanilla"));
            assertEquals(1, backends.failures().size());
            assertTrue(backends.failures().getFirst().message().contains("broken on purpose"),
                    backends.failures().getFirst().message());
        }
    }

    @Test
    void discoveredOnTheModulePathByTheKvqCommand() throws Exception {
        Path jar = PluginJars.build("absmax", "com.example.kvq.absmax.AbsmaxProvider", work);
        Path config = Files.writeString(work.resolve("kv.yaml"), """
                backend: example-absmax
                nbits_key: 8
                nbits_value: 4
                q_group_size: -1
                residual_length: 0
                asym: false
                """);
        Result list = kvq(jar, "backends", "--json");
        assertEquals(0, list.exit(), list.err() + list.out());
        JsonNode rows = new ObjectMapper().readTree(list.out());
        JsonNode plugin = null;
        for (JsonNode r : rows) {
            if (r.path("name").asText().equals("example-absmax")) {
                plugin = r;
            }
        }
        assertTrue(plugin != null, list.out());
        assertEquals("module com.example.kvq.absmax", plugin.path("origin").asText());
        assertEquals("[4,8]", plugin.path("bits").toString());

        Result check = kvq(jar, "config", "check", config.toString(), "--layers", "4", "--kv-heads", "2",
                "--head-dim", "64");
        assertEquals(0, check.exit(), check.err());
        assertTrue(check.out().contains("backend example-absmax"), check.out());

        Path bad = Files.writeString(work.resolve("bad.yaml"), "backend: example-absmax\nnbits: 2\n");
        Result rejected = kvq(jar, "config", "check", bad.toString(), "--layers", "4");
        assertEquals(2, rejected.exit());
        assertTrue(rejected.err().contains("backend 'example-absmax' cannot quantize keys of layer 0 with 2 bits; "
                + "it supports 4, 8 bits"), rejected.err());
    }

    record Result(int exit, String out, String err) {
    }

    /** Runs {@code kvq} in a child JVM with kvq's modules and the plugin jar on the module path. */
    private Result kvq(Path plugin, String... args) throws Exception {
        // kvq's modules and their libraries: the class path minus the test tooling
        Pattern testTools = Pattern.compile(".*(junit|opentest4j|apiguardian|archunit|jspecify|surefire|kvq-testkit"
                + "|test-classes).*");
        // native-library jars (libtorch, DJL's JNI bridge) are no valid modules: the class path, as ./kvq does
        Pattern nativeJars = Pattern.compile(".*/(pytorch-native-|pytorch-jni-)[^/]*\\.jar");
        List<String> modulePath = new ArrayList<>();
        List<String> classPath = new ArrayList<>();
        for (String entry : System.getProperty("java.class.path").split(File.pathSeparator)) {
            if (nativeJars.matcher(entry).matches()) {
                classPath.add(entry);
            } else if (!testTools.matcher(entry).matches()) {
                modulePath.add(entry);
            }
        }
        modulePath.add(plugin.toString());
        List<String> cmd = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--add-modules", "jdk.incubator.vector", "-p", String.join(File.pathSeparator, modulePath)));
        if (!classPath.isEmpty()) {
            cmd.addAll(List.of("-cp", String.join(File.pathSeparator, classPath)));
        }
        cmd.addAll(List.of("-m", "dev.kvq.cli/dev.kvq.cli.Main"));
        cmd.addAll(List.of(args));
        Process p = new ProcessBuilder(cmd).redirectOutput(work.resolve("out.txt").toFile())
                .redirectError(work.resolve("err.txt").toFile()).start();
        int exit = p.waitFor();
        return new Result(exit, Files.readString(work.resolve("out.txt"), StandardCharsets.UTF_8),
                Files.readString(work.resolve("err.txt"), StandardCharsets.UTF_8));
    }
}
