package dev.kvq.cli;

import static dev.kvq.cli.CommandTest.kvq;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kvq.testkit.Repo;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The model commands end to end on the demo model that ships with kvq, through {@link Main}. */
class ModelCommandsTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    private static String model() {
        return Repo.demoModel().toString();
    }

    private static JsonNode json(CommandTest.Run r) throws IOException {
        assertEquals(0, r.exit(), r.err());
        return JSON.readTree(r.out());
    }

    private static List<String> names(JsonNode rows) {
        List<String> out = new ArrayList<>();
        rows.forEach(row -> out.add(row.path("config").asText()));
        return out;
    }

    @Test
    void evalPplScoresSweepAndConfigFilesAsSeparateRows() throws IOException {
        Path layers = Files.writeString(dir.resolve("layers.yaml"), "0: {nbits_key: 8, nbits_value: 4}\n"
                + "1: {nbits_key: 4, nbits_value: 2}\n2: {nbits_key: 4, nbits_value: 2}\n3: {nbits_key: 2, nbits_value: 2}\n");
        JsonNode rows = json(kvq("eval", "ppl", "--model", model(), "--data", Repo.demoText().toString(), "--length",
                "1200", "--sweep", "pertoken", "--pairs", "8-8,4-2", "--kv-config", layers.toString(), "--json"))
                .path("results");
        assertEquals(List.of("pertoken KV8", "pertoken K4V2", "layers.yaml"), names(rows));
        // a --kv-config file must not leak into the sweep's rows, nor they into it
        assertEquals(8.0, rows.get(0).path("avg_k_bits").asDouble());
        assertEquals(2.0, rows.get(1).path("avg_v_bits").asDouble());
        assertEquals(4.5, rows.get(2).path("avg_k_bits").asDouble());
        assertEquals(2.5, rows.get(2).path("avg_v_bits").asDouble());
        double fp = rows.get(0).path("fp_ppl").asDouble();
        assertEquals(fp, rows.get(0).path("ppl").asDouble(), fp * 1e-3, "8-bit is near-lossless");
        assertTrue(rows.get(1).path("ppl").asDouble() > rows.get(0).path("ppl").asDouble() + 0.01);
        assertTrue(rows.get(1).path("kv_bytes").asLong() < rows.get(0).path("kv_bytes").asLong());
    }

    @Test
    void generateIsGreedyAndDeterministic() throws IOException {
        String[] args = {"generate", "--model", model(), "--prompt", "ROMEO:", "--max-new-tokens", "24", "--scheme",
            "kivi", "--k-bits", "4", "--v-bits", "2", "--json"};
        JsonNode a = json(kvq(args));
        JsonNode b = json(kvq(args));
        assertEquals(24, a.path("new_tokens").asInt());
        assertEquals(a.path("text").asText(), b.path("text").asText());
        assertFalse(a.path("text").asText().isBlank());
    }

    @Test
    void benchReportsEveryConfigurationBesideFullPrecision() throws IOException {
        JsonNode doc = json(kvq("bench", "--model", model(), "--contexts", "48", "--decode-steps", "4", "--repeats",
                "1", "--scheme", "pertoken", "--k-bits", "4", "--v-bits", "4", "--json"));
        JsonNode rows = doc.path("results");
        assertEquals(List.of("fp32", "KV4"), names(rows));
        for (JsonNode row : rows) {
            assertEquals(48, row.path("context").asInt());
            assertTrue(row.path("decode_tokens_per_s").asDouble() > 0);
        }
        assertTrue(rows.get(1).path("kv_bytes").asLong() < rows.get(0).path("kv_bytes").asLong());
    }

    @Test
    void onTheDeviceAStepMovesTheSameBytesAtEveryContextAndOnTheHostMoreWithTheHistory() throws IOException {
        for (String placement : new String[] {"device", "host"}) {
            // no warm-up steps: the contexts timed are exactly 64 and 256 tokens
            JsonNode rows = json(kvq("bench", "--model", model(), "--contexts", "64,256", "--decode-steps", "4",
                    "--warmup-steps", "0", "--repeats", "0", "--scheme", "pertoken", "--k-bits", "4", "--v-bits", "4", "--scale-dtype",
                    "float16", "--placement", placement, "--json")).path("results");
            for (JsonNode short_ : rows) {
                for (JsonNode long_ : rows) {
                    if (short_.path("config").equals(long_.path("config")) && short_.path("context").asInt() == 64
                            && long_.path("context").asInt() == 256) {
                        double a = short_.path("transfer_bytes_per_step").asDouble();
                        double b = long_.path("transfer_bytes_per_step").asDouble();
                        assertTrue(a > 0, placement + " moves something");
                        if (placement.equals("device")) {
                            assertEquals(a, b, 0.0, short_.path("config") + ": bytes per step at 64 and 256 tokens");
                        } else {
                            assertTrue(b > 3 * a, short_.path("config") + " on the host: " + a + " then " + b);
                        }
                    }
                }
                if (placement.equals("device") && short_.path("config").asText().equals("KV4")) {
                    // the device holds exactly the tokens; the host also counts the rest of the 16-token tail block
                    // being filled and an empty one-token float32 residual per layer (4 layers, 2 heads of 64)
                    int tokens = short_.path("context").asInt() + 4;
                    long held = short_.path("kv_bytes").asLong();
                    long device = short_.path("kv_device_bytes").asLong();
                    double perToken = device / (double) tokens;
                    assertTrue(device <= held && held - device <= 16 * perToken + 4 * 2 * 2 * 64 * Float.BYTES,
                            "device " + device + " against held " + held);
                }
            }
        }
    }

    @Test
    void capacityModeDecodesTheLargestBatchThatFitsTheBudget() throws IOException {
        long budget = 1 << 20;
        JsonNode doc = json(kvq("bench", "--model", model(), "--contexts", "64", "--decode-steps", "4", "--repeats",
                "0", "--kv-memory", "1MiB", "--scheme", "pertoken", "--k-bits", "4", "--v-bits", "4", "--placement",
                "device", "--json"));
        assertEquals(budget, doc.path("kv_memory_bytes").asLong());
        JsonNode fp = doc.path("results").get(0);
        JsonNode kv4 = doc.path("results").get(1);
        assertEquals("KV4", kv4.path("config").asText());
        int batch = kv4.path("batch").asInt();
        double perSequence = kv4.path("kv_bytes").asDouble() / batch;
        assertTrue(batch * perSequence <= budget && (batch + 1) * perSequence > budget,
                batch + " sequences of " + perSequence + " bytes against " + budget);
        assertTrue(batch > 3 * fp.path("batch").asInt(), "KV4 fits " + batch + " sequences, full precision "
                + fp.path("batch").asInt());
        assertTrue(kv4.path("decode_tokens_per_s").asDouble() > 0);
    }

    private static final java.util.regex.Pattern DEMO_ROW = java.util.regex.Pattern.compile(
            "^(.{22}) +(32 \\(fp32\\)|\\d\\.\\d\\d) +([\\d,]+) +([\\d.]+) +([\\d.]+)x +([\\d.]+)% +([\\d.]+)% +\\d+$");

    @Test
    void demoComparesThreeCachesOnTheShippedModel() {
        CommandTest.Run r = kvq("demo", "--model", model(), "--max-new-tokens", "48");
        assertEquals(0, r.exit(), r.err());
        java.util.Map<String, java.util.regex.Matcher> rows = new java.util.LinkedHashMap<>();
        for (String line : r.out().lines().toList()) {
            java.util.regex.Matcher m = DEMO_ROW.matcher(line);
            if (m.matches()) {
                rows.put(m.group(1).strip(), m);
            }
        }
        assertEquals(List.of("full precision", "KV4 (per-token)", "mixed (kv-mixed.yaml)"), List.copyOf(rows.keySet()),
                r.out());
        java.util.regex.Matcher fp = rows.get("full precision");
        assertEquals("32 (fp32)", fp.group(2));
        assertEquals("4.00", rows.get("KV4 (per-token)").group(2));
        assertEquals("3.50", rows.get("mixed (kv-mixed.yaml)").group(2), "the shipped mixed config averages 3.5 bits");
        long fpBytes = Long.parseLong(fp.group(3).replace(",", ""));
        assertTrue(Double.parseDouble(fp.group(5)) < 1, "a float32 cache is larger than float16: " + fp.group());
        for (String name : List.of("KV4 (per-token)", "mixed (kv-mixed.yaml)")) {
            java.util.regex.Matcher q = rows.get(name);
            // below half the float32 cache: below float16
            assertTrue(Long.parseLong(q.group(3).replace(",", "")) < fpBytes / 2, q.group());
            assertTrue(Double.parseDouble(q.group(5)) > 1, "smaller than float16: " + q.group());
            double top1 = Double.parseDouble(q.group(7));
            assertTrue(top1 >= 80 && top1 <= 100, "teacher-forced agreement " + q.group());
            double same = Double.parseDouble(q.group(6));
            String diff = r.out().lines().filter(l -> l.startsWith(name + ": ")).findFirst().orElseThrow();
            // the text is the same up to the first difference at least
            assertTrue(diff.endsWith("identical") ? same == 100
                    : same >= 100.0 * Integer.parseInt(diff.replaceAll(".* ", "")) / 48 - 0.05, diff + " vs " + same);
        }
        assertTrue(r.out().contains("full-precision continuation:"), r.out());
    }

    @Test
    void calibrateThenTuneWriteConfigsThatEvalAccepts() throws IOException {
        Path profile = dir.resolve("cal/profile.json");
        CommandTest.Run cal = kvq("calibrate", "--model", model(), "--data", Repo.demoText().toString(), "--length", "3000",
                "--window", "96", "--windows", "1", "--kl-windows", "1", "--prefill", "16", "--groups", "2", "--out",
                profile.toString());
        assertEquals(0, cal.exit(), cal.err());
        assertTrue(cal.out().contains("additive estimate"), cal.out());
        // the estimate's best mix per budget, ready for --kv-config, in a folder named after the profile
        Path estimate = dir.resolve("cal/profile-estimates/estimate-3.50bits.kvq.yaml");
        assertTrue(Files.isRegularFile(dir.resolve("cal/profile-estimates/estimate-3.50bits.yaml")));
        try (var beside = Files.list(dir.resolve("cal"))) {
            assertEquals(List.of("profile-estimates", "profile.json"), beside.map(p -> p.getFileName().toString())
                    .sorted().toList());
        }
        assertTrue(Files.readString(estimate).contains("per_layer_config_path: estimate-3.50bits.yaml"));

        Path out = dir.resolve("tuned");
        CommandTest.Run tune = kvq("tune", "--model", model(), "--profile", profile.toString(), "--data",
                Repo.demoText().toString(), "--offset", "3000", "--length", "2000", "--window", "96", "--windows", "1",
                "--prefill", "16", "--max-avg-bits", "3.5", "--trials", "12", "--threads", "1", "--no-baselines",
                "--out-dir", out.toString());
        assertEquals(0, tune.exit(), tune.err());
        Path best = out.resolve("best-3.50bits.kvq.yaml");
        assertTrue(Files.isRegularFile(best), tune.out());

        JsonNode rows = json(kvq("eval", "ppl", "--model", model(), "--data", Repo.demoText().toString(), "--length",
                "1200", "--kv-config", estimate.toString(), "--kv-config", best.toString(), "--json")).path("results");
        assertEquals(2, rows.size());
        for (JsonNode row : rows) {
            double bits = (row.path("avg_k_bits").asDouble() + row.path("avg_v_bits").asDouble()) / 2;
            assertTrue(bits <= 3.5 + 1e-9, row.toString());
            assertTrue(row.path("kv_bytes").asLong() < row.path("kv_bytes_fp16").asLong() / 3, row.toString());
        }
    }

    @Test
    void badInputExitsWith2AndNamesTheProblem() {
        CommandTest.Run missing = kvq("generate", "--model", dir.resolve("nope").toString(), "--prompt", "x");
        assertEquals(2, missing.exit());
        assertTrue(missing.err().contains("does not exist"), missing.err());

        CommandTest.Run bits = kvq("generate", "--model", model(), "--prompt", "x", "--k-bits", "9");
        assertEquals(2, bits.exit());
        assertTrue(bits.err().contains("'--k-bits': was 9, must be between 1 and 8 bits"), bits.err());

        CommandTest.Run pairs = kvq("eval", "ppl", "--model", model(), "--data", Repo.demoText().toString(),
                "--sweep", "pertoken", "--pairs", "8");
        assertEquals(2, pairs.exit());
        assertTrue(pairs.err().contains("'--pairs' (K-V): was '8', entries look like 8-4"), pairs.err());
    }
}
