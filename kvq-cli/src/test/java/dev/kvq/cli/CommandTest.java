package dev.kvq.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kvq.testkit.Shared;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CommandTest {
    @TempDir
    Path dir;

    record Run(int exit, String out, String err) {
    }

    static Run kvq(String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        int exit = Main.run(args, new PrintWriter(out), new PrintWriter(err));
        return new Run(exit, out.toString(), err.toString());
    }

    @Test
    void backendsJsonListsNameAndBits() throws IOException {
        Run r = kvq("backends", "--json");
        assertEquals(0, r.exit(), r.err());
        JsonNode rows = new ObjectMapper().readTree(r.out());
        assertTrue(rows.isArray());
        JsonNode vanilla = null;
        for (JsonNode row : rows) {
            if (row.path("name").asText().equals("vanilla")) {
                vanilla = row;
            }
        }
        assertTrue(vanilla != null, r.out());
        assertEquals("[1,2,3,4,5,6,7,8]", vanilla.path("bits").toString());
    }

    @Test
    void configCheckPrintsThePlanOfAPublishedFile() throws IOException {
        Path f = Shared.require("kvtuner-configs/config/meta-llama_Meta-Llama-3-8B-Instruct_k8_v4._per_layer.yaml");
        Run r = kvq("config", "check", f.toString(), "--layers", "32", "--json");
        assertEquals(0, r.exit(), r.err());
        JsonNode plan = new ObjectMapper().readTree(r.out());
        assertEquals(32, plan.path("plan").size());
        assertEquals(8.0, plan.path("avg_key_bits").asDouble());
        assertEquals(4.0, plan.path("avg_value_bits").asDouble());
        assertEquals(6.0, plan.path("avg_bits").asDouble());
    }

    @Test
    void configCheckRejectsMalformedFilesWithExitCode2() throws IOException {
        Path layers = Files.writeString(dir.resolve("layers.yaml"), "0: {nbits_key: 8, nbits_value: 4}\n"
                + "1: {nbits_key: 4, nbits_value: 2}\n");
        Run ok = kvq("config", "check", layers.toString(), "--layers", "2");
        assertEquals(0, ok.exit(), ok.err());
        assertTrue(ok.out().contains("average: key 6.000 bits, value 3.000 bits, KV 4.500 bits"), ok.out());

        Run missing = kvq("config", "check", layers.toString(), "--layers", "3");
        assertEquals(2, missing.exit());
        assertTrue(missing.err().contains("per_layer_config misses layer 2"), missing.err());

        Path heads = Files.writeString(dir.resolve("heads.yaml"), "0:\n  1: {nbits_key: 8, nbits_value: 4}\n"
                + "  0: {nbits_key: 8, nbits_value: 4}\n");
        Run order = kvq("config", "check", heads.toString(), "--layers", "1", "--json");
        assertEquals(2, order.exit());
        assertTrue(order.err().contains("lists head 1 where head 0 is expected"), order.err());
        assertEquals(false, new ObjectMapper().readTree(order.out()).path("valid").asBoolean(true));

        Path bits = Files.writeString(dir.resolve("bits.yaml"), "nbits: 9\n");
        Run badBits = kvq("config", "check", bits.toString(), "--layers", "2");
        assertEquals(2, badBits.exit());
        assertTrue(badBits.err().contains("nbits must be between 1 and 8, was 9"), badBits.err());

        Run unknownBackend = kvq("config", "check", layers.toString(), "--layers", "2", "--backend", "nope");
        assertEquals(2, unknownBackend.exit());
        assertTrue(unknownBackend.err().contains("unknown backend 'nope'; available: ")
                && unknownBackend.err().contains("vanilla"), unknownBackend.err());

        Run noFile = kvq("config", "check", dir.resolve("absent.yaml").toString(), "--layers", "2");
        assertEquals(2, noFile.exit());
        assertTrue(noFile.err().contains("does not exist"), noFile.err());
    }
}
