package dev.kvq.backend.vanilla;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kvq.io.safetensors.SafeTensors;
import dev.kvq.spi.PackedBlock;
import dev.kvq.spi.QuantSpec;
import dev.kvq.spi.VectorSupport;
import dev.kvq.tensor.KvView;
import dev.kvq.testkit.Goldens;
import dev.kvq.testkit.Numeric;
import java.lang.foreign.Arena;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/**
 * Every case of {@code vanilla.safetensors} (KVTuner's {@code VanillaQuantizer.quantize} in float32): codes
 * exactly, scales and zeros within 1e-6 relative, dequantized values within 1e-6 of the input's range; on the
 * vector path and on the scalar reference path.
 */
class VanillaGoldenTest {
    private static final String FILE = "vanilla.safetensors";

    @TestFactory
    Stream<DynamicTest> reproducesReference() {
        List<JsonNode> cases = Goldens.cases(FILE);
        List<DynamicTest> tests = new ArrayList<>();
        for (JsonNode c : cases) {
            tests.add(DynamicTest.dynamicTest(c.path("key").asText() + " [vector]", () -> {
                Assumptions.assumeTrue(VectorSupport.enabled(), "the Vector API is not in this JVM");
                check(c, true);
            }));
            tests.add(DynamicTest.dynamicTest(c.path("key").asText() + " [scalar]", () -> check(c, false)));
        }
        return tests.stream();
    }

    private static void check(JsonNode c, boolean vectorized) {
        String key = c.path("key").asText();
        int bits = c.path("nbits").asInt();
        boolean asym = c.path("asym").asBoolean();
        int axis = c.path("axis").asInt();
        int gs = c.path("group_size").asInt();
        try (SafeTensors st = Goldens.open(FILE); Arena arena = Arena.ofConfined()) {
            SafeTensors.Tensor in = st.tensor("input." + c.path("input").asText());
            float[] x = in.floats();
            int heads = in.dim(0) * in.dim(1);
            KvView view = KvView.of(x, heads, in.dim(2), in.dim(3));
            PackedBlock block = new VanillaQuantizer(QuantSpec.of(bits, axis, gs, asym), vectorized).quantize(view, arena);

            long[] codes = st.tensor(key + ".codes").longs();
            float[] scale = st.tensor(key + ".scale").floats();
            float[] zeros = asym ? st.tensor(key + ".zeros").floats() : null;
            assertEquals(codes.length, block.elements(), key + ": element count");
            assertEquals(scale.length, block.groups(), key + ": group count");
            for (int j = 0; j < codes.length; j++) {
                int ours = block.code(j) + block.codeOffset();
                if (ours != codes[j]) {
                    fail(key + ": code " + j + " is " + ours + ", reference " + codes[j]);
                }
            }
            for (int g = 0; g < scale.length; g++) {
                assertRelative(scale[g], block.scale(g), key + ": scale of group " + g);
                if (asym) {
                    assertRelative(zeros[g], block.zero(g), key + ": zero of group " + g);
                } else {
                    assertEquals(0f, block.zero(g), key + ": sym zero");
                }
            }
            // Dequantized values: against the golden dequant where recorded, else (q + z) * s from the golden codes.
            float[] expected;
            if (st.contains(key + ".dequant")) {
                expected = st.tensor(key + ".dequant").floats();
            } else {
                expected = new float[x.length];
                int groupSize = gs == -1 ? in.dim(3) : gs;
                for (int j = 0; j < codes.length; j++) {
                    int g = j / groupSize;
                    float v = ((float) codes[(int) j] + (asym ? zeros[g] : 0f)) * scale[g];
                    expected[(int) block.order().logicalIndex(j, heads, in.dim(2), in.dim(3), groupSize)] = v;
                }
            }
            float[] ours = new float[x.length];
            block.dequantize(KvView.of(ours, heads, in.dim(2), in.dim(3)));
            float tol = 1e-6f * Math.max(Numeric.range(x), Numeric.maxAbs(x));
            int bad = Numeric.firstMismatch(ours, expected, tol);
            assertTrue(bad < 0, () -> key + ": dequantized value " + bad + " is " + ours[bad] + ", reference "
                    + expected[bad] + " (tolerance " + tol + ")");
        }
    }

    private static void assertRelative(float expected, float actual, String what) {
        float tol = 1e-6f * Math.abs(expected);
        assertTrue(Math.abs(expected - actual) <= tol, () -> what + ": " + actual + ", reference " + expected);
    }
}
