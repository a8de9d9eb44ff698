package dev.kvq.tests;

import dev.kvq.spi.QuantizerProvider;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.jar.JarEntry;
import java.util.jar.JarOutputStream;
import java.util.stream.Stream;
import javax.tools.JavaCompiler;
import javax.tools.ToolProvider;

/** Builds third-party plugin jars from the sources under test resources {@code thirdparty/NAME}, at test time. */
final class PluginJars {
    private PluginJars() {
    }

    /** Compiles {@code thirdparty/name} against kvq-api alone and packs it with a services file naming {@code provider}. */
    static Path build(String name, String provider, Path workDir) throws IOException {
        URL res = PluginJars.class.getResource("/thirdparty/" + name);
        if (res == null) {
            throw new IllegalStateException("missing test resource thirdparty/" + name);
        }
        Path src;
        try {
            src = Path.of(res.toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
        Path classes = Files.createDirectories(workDir.resolve(name + "-classes"));
        List<String> sources;
        try (Stream<Path> s = Files.walk(src)) {
            sources = s.filter(p -> p.toString().endsWith(".java")).map(Path::toString).toList();
        }
        boolean modular = sources.stream().anyMatch(s -> s.endsWith("module-info.java"));
        List<String> args = new ArrayList<>(List.of("--release", "25", "-d", classes.toString(), "-nowarn"));
        args.addAll(List.of(modular ? "--module-path" : "--class-path", apiLocation().toString()));
        args.addAll(sources);
        JavaCompiler javac = ToolProvider.getSystemJavaCompiler();
        int rc = javac.run(null, null, null, args.toArray(String[]::new));
        if (rc != 0) {
            throw new IllegalStateException("compiling thirdparty/" + name + " failed (" + rc + ")");
        }
        Path jar = workDir.resolve(name + ".jar");
        try (JarOutputStream out = new JarOutputStream(Files.newOutputStream(jar)); Stream<Path> s = Files.walk(classes)) {
            for (Path p : s.filter(Files::isRegularFile).toList()) {
                out.putNextEntry(new JarEntry(classes.relativize(p).toString().replace('\\', '/')));
                Files.copy(p, out);
                out.closeEntry();
            }
            out.putNextEntry(new JarEntry("META-INF/services/" + QuantizerProvider.class.getName()));
            write(out, provider + "\n");
            out.closeEntry();
        }
        return jar;
    }

    /** Where kvq-api's classes are (its jar or its target/classes). */
    static Path apiLocation() {
        try {
            return Path.of(QuantizerProvider.class.getProtectionDomain().getCodeSource().getLocation().toURI());
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    private static void write(OutputStream out, String s) {
        try {
            out.write(s.getBytes(java.nio.charset.StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
