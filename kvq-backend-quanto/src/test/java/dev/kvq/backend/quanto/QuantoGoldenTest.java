package dev.kvq.backend.quanto;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kvq.io.safetensors.SafeTensors;
import dev.kvq.spi.PackedBlock;
import dev.kvq.spi.QuantSpec;
import dev.kvq.tensor.KvView;
import dev.kvq.testkit.Goldens;
import dev.kvq.testkit.Numeric;
import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Every case of {@code quanto.safetensors}: dequantized values, scale and shift within 1e-6 relative (to the
 * input's magnitude). The manifest's {@code reference_failures} (int8 with axis 0 on batch 1, where quanto needs a
 * scalar scale and raises) get kvq's documented per-tensor fallback, checked here.
 */
class QuantoGoldenTest {
    private static final String FILE = "quanto.safetensors";

    @TestFactory
    Stream<DynamicTest> reproducesReference() {
        List<DynamicTest> tests = new ArrayList<>();
        for (JsonNode c : Goldens.cases(FILE)) {
            tests.add(DynamicTest.dynamicTest(c.path("key").asText(), () -> check(c)));
        }
        for (JsonNode f : Goldens.entry(FILE).path("reference_failures")) {
            tests.add(DynamicTest.dynamicTest(f.path("key").asText() + " (reference fails: per-tensor fallback)",
                    () -> fallback(f.path("key").asText())));
        }
        return tests.stream();
    }

    private static QuantSpec spec(int bits, int axis, int gs) {
        return new QuantSpec(bits, axis, gs, true, Map.of());
    }

    private static void check(JsonNode c) {
        String key = c.path("key").asText();
        int bits = c.path("nbits").asInt();
        int axis = c.path("axis").asInt();
        int gs = c.path("group_size").isNull() ? -1 : c.path("group_size").asInt();
        try (SafeTensors st = Goldens.open(FILE); Arena arena = Arena.ofConfined()) {
            SafeTensors.Tensor in = st.tensor("input." + c.path("input").asText());
            float[] x = in.floats();
            int heads = in.dim(0) * in.dim(1);
            float mag = Math.max(Numeric.maxAbs(x), Numeric.range(x));
            float tol = 1e-6f * mag;
            PackedBlock b = new QuantoProvider().create(spec(bits, axis, gs))
                    .quantize(KvView.of(x, heads, in.dim(2), in.dim(3)), arena);
            float[] scale = st.tensor(key + ".scale").floats();
            assertEquals(scale.length, b.groups(), key + ": groups");
            for (int g = 0; g < scale.length; g++) {
                int gg = g;
                assertTrue(Math.abs(scale[g] - b.scale(g)) <= 1e-6f * Math.max(Math.abs(scale[g]), 1e-30f) + 1e-12f,
                        () -> key + ": scale " + gg + " " + b.scale(gg) + " vs " + scale[gg]);
            }
            if (bits != 8) {
                float[] shift = st.tensor(key + ".shift").floats();
                for (int g = 0; g < shift.length; g++) {
                    int gg = g;
                    assertTrue(Math.abs(shift[g] + b.zero(g)) <= tol, () -> key + ": shift " + gg);
                }
            }
            float[] golden = st.tensor(key + ".dequant").floats();
            float[] ours = new float[x.length];
            b.dequantize(KvView.of(ours, heads, in.dim(2), in.dim(3)));
            int bad = Numeric.firstMismatch(ours, golden, tol);
            assertTrue(bad < 0, () -> key + ": dequantized " + bad + " is " + ours[bad] + ", reference " + golden[bad]);
        }
    }

    private static void fallback(String key) {
        String input = key.substring(0, key.indexOf('.'));
        try (SafeTensors st = Goldens.open(FILE); Arena arena = Arena.ofConfined()) {
            SafeTensors.Tensor in = st.tensor("input." + input);
            float[] x = in.floats();
            int heads = in.dim(0) * in.dim(1);
            PackedBlock b = new QuantoProvider().create(spec(8, 0, -1))
                    .quantize(KvView.of(x, heads, in.dim(2), in.dim(3)), arena);
            assertEquals(1, b.groups(), key + ": one per-tensor scale");
            assertEquals(Numeric.maxAbs(x) / 127f, b.scale(0), key + ": scale = max|x| / 127");
            float[] ours = new float[x.length];
            b.dequantize(KvView.of(ours, heads, in.dim(2), in.dim(3)));
            assertTrue(Numeric.maxAbsDiff(x, ours) <= b.scale(0) / 2 + 1e-7f, key + ": error within half a step");
        }
    }
}
