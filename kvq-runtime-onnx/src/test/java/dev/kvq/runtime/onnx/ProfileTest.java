package dev.kvq.runtime.onnx;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.generate.CacheFactory;
import dev.kvq.generate.DecodeSession;
import dev.kvq.generate.model.ModelDir;
import dev.kvq.generate.spi.Decoder;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.api.parallel.Isolated;

/** {@code -Dkvq.onnx.profile=PREFIX}: ONNX Runtime's trace of the session's runs, written when the session closes. */
@Isolated("sets a system property every ONNX Runtime session reads")
class ProfileTest {
    @Test
    void everyRunOfTheSessionIsTraced(@TempDir Path dir) throws IOException {
        ModelDir model = ModelDir.open(OptimumVariantsTest.fixture("base"));
        CacheFactory fp = CacheFactory.fullPrecision(model.config().shape());
        System.setProperty(OnnxDecoder.PROFILE_PROPERTY, dir.resolve("trace").toString());
        try (Decoder d = new OnnxRuntimeProvider().open(model, "cpu");
             DecodeSession s = new DecodeSession(d, List.of(fp.newCache()))) {
            s.feed(new int[][] {{5, 17, 260}}, false);
            s.feed(new int[][] {{33}}, false);
            s.feed(new int[][] {{90}}, false);
        } finally {
            System.clearProperty(OnnxDecoder.PROFILE_PROPERTY);
        }
        List<Path> traces;
        try (Stream<Path> files = Files.list(dir)) {
            traces = files.filter(f -> f.getFileName().toString().startsWith("trace_")).toList();
        }
        assertEquals(1, traces.size(), "one session, one trace: " + traces);
        String trace = Files.readString(traces.get(0));
        long runs = Pattern.compile("\"name\"\\s*:\\s*\"model_run\"").matcher(trace).results().count();
        long nodes = Pattern.compile("\"cat\"\\s*:\\s*\"Node\"").matcher(trace).results().count();
        assertEquals(3, runs, "a prefill and two decode steps");
        assertTrue(nodes > 3, "the nodes of each run: " + nodes);
    }
}
