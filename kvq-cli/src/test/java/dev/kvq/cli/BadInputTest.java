package dev.kvq.cli;

import static dev.kvq.cli.CommandTest.kvq;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.testkit.Repo;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Bad input of every command: exit code 2 and one line naming the option, file or value and what is allowed, before
 * any work (nothing on standard output), and the results of an earlier run untouched. The outputs of every case point
 * at a directory holding earlier results, most with --force, so a check that came too late would overwrite them.
 */
class BadInputTest {
    @TempDir
    static Path tmp;

    /** Earlier results: a report, a search, a profile with its estimates. */
    static Path earlier;
    static Path report;
    static Path tuned;
    static Path profile;
    static Path inputs;
    static Snapshot before;

    static final String M = Repo.demoModel().toString();
    static final String T = Repo.demoText().toString();

    /** A port some program listens on, for kvq serve's check. */
    static java.net.ServerSocket busy;

    @BeforeAll
    static void earlierResults() throws IOException {
        busy = new java.net.ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress());
        earlier = Files.createDirectories(tmp.resolve("earlier"));
        report = Files.createDirectories(earlier.resolve("report"));
        Files.writeString(report.resolve("index.html"), "<html>earlier report</html>");
        Files.write(report.resolve("ppl_vs_bits.png"), new byte[] {(byte) 0x89, 'P', 'N', 'G', 1, 2, 3});
        tuned = Files.createDirectories(earlier.resolve("tuned"));
        for (String f : List.of("search.json", "index.html", "pareto.png", "front-00-2.000bits.yaml",
                "best-3.50bits.yaml", "best-3.50bits.kvq.yaml")) {
            Files.writeString(tuned.resolve(f), "earlier " + f);
        }
        Path cal = Files.createDirectories(earlier.resolve("cal"));
        profile = cal.resolve("profile.json");
        // a real profile (attention errors only, which take seconds) for the tune cases
        CommandTest.Run r = kvq("calibrate", "--model", M, "--data", T, "--length", "3000", "--window", "96",
                "--windows", "1", "--kl-windows", "0", "--groups", "2", "--out", profile.toString());
        assertEquals(0, r.exit(), r.err());
        Files.createDirectories(cal.resolve("profile-estimates"));
        Files.writeString(cal.resolve("profile-estimates/estimate-3.00bits.yaml"), "0: {nbits_key: 4, nbits_value: 2}\n");

        inputs = Files.createDirectories(tmp.resolve("inputs"));
        Files.writeString(inputs.resolve("trailing.json"), "{\"nbits\": 4}\n{\"nbits\": 2}\n");
        Files.copy(Repo.demoModel().resolve("model.onnx"), inputs.resolve("binary.yaml"));
        Files.writeString(inputs.resolve("a-file"), "not a directory");
        // a model whose config.json is cut short, and one whose vocab.json is no vocabulary
        Path truncated = Files.createDirectories(inputs.resolve("truncated-model"));
        String config = Files.readString(Repo.demoModel().resolve("config.json"));
        Files.writeString(truncated.resolve("config.json"), config.substring(0, config.length() / 2));
        Path vocab = Files.createDirectories(inputs.resolve("bad-vocab-model"));
        Files.writeString(vocab.resolve("config.json"), config);
        Files.writeString(vocab.resolve("vocab.json"), "[1, 2, 3]");
        // GSM8K problems too long for the model's 1,024 positions
        Files.writeString(inputs.resolve("gsm8k.jsonl"), "{\"question\": \"" + "a".repeat(2000) + "\", \"answer\": "
                + "\"#### 1\"}\n");
        // a LongBench directory with one task that generates 512 tokens
        Path longbench = Files.createDirectories(inputs.resolve("longbench"));
        Files.writeString(longbench.resolve("dataset2prompt.json"), "{\"multi_news\": \"{context}\"}");
        Files.writeString(longbench.resolve("dataset2maxlen.json"), "{\"multi_news\": 512}");
        Files.writeString(longbench.resolve("multi_news.jsonl"), "{\"input\": \"\", \"context\": \"the king\", "
                + "\"answers\": [\"the king\"], \"_id\": \"0\"}\n");
        before = Snapshot.of(earlier);
    }

    static String in(String name) {
        return inputs.resolve(name).toString();
    }

    static Arguments bad(String expected, String... args) {
        return Arguments.of(String.join(" ", args).replace(M, "MODEL").replace(T, "TEXT")
                .replace(tmp.toString(), "TMP"), expected, args);
    }

    static String[] gen(String... more) {
        return concat(new String[] {"generate", "--model", M, "--prompt", "KING:"}, more);
    }

    static String[] ppl(String... more) {
        return concat(new String[] {"eval", "ppl", "--model", M, "--data", T, "--length", "2000", "--report",
            report.toString(), "--force"}, more);
    }

    /** eval ppl without --data and --length, for the cases that give their own. */
    static String[] pplOwnData(String... more) {
        return concat(new String[] {"eval", "ppl", "--model", M, "--report", report.toString(), "--force"}, more);
    }

    static String[] bench(String... more) {
        return concat(new String[] {"bench", "--model", M, "--report", report.toString(), "--force"}, more);
    }

    static String[] serve(String... more) {
        return concat(new String[] {"serve", "--model", M}, more);
    }

    static String[] cal(String... more) {
        return concat(new String[] {"calibrate", "--model", M, "--data", T, "--out", profile.toString(), "--force"},
                more);
    }

    static String[] tune(String... more) {
        return concat(new String[] {"tune", "--model", M, "--profile", profile.toString(), "--data", T, "--out-dir",
            tuned.toString(), "--force"}, more);
    }

    static String[] concat(String[] a, String[] b) {
        String[] out = Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    static Stream<Arguments> cases() {
        List<Arguments> c = new ArrayList<>();
        // generate
        c.add(bad("the prompt (5 tokens) plus --max-new-tokens 4000 needs 4,005 token positions, but kvq-demo-char "
                + "has 1,024 (max_position_embeddings in its config.json); give a --max-new-tokens of at most 1019",
                gen("--max-new-tokens", "4000")));
        c.add(bad("Invalid value for option '--max-new-tokens': was 0, must be at least 1", gen("--max-new-tokens", "0")));
        c.add(bad("Invalid value for option '--max-new-tokens': 'many' is not a whole number", gen("--max-new-tokens",
                "many")));
        c.add(bad("'--stop' (STR): is empty; give at least one character", gen("--stop", "")));
        c.add(bad("'--prompt' (TEXT): is empty", "generate", "--model", M, "--prompt", ""));
        c.add(bad("--kv-config is given 2 times, but this command runs one configuration", gen("--kv-config",
                M + "/kv-mixed.yaml", "--kv-config", M + "/kv-mixed.yaml")));
        c.add(bad("--k-bits has no effect with " + M + "/kv-mixed.yaml: its per-layer precision sets the bits of every "
                + "layer", gen("--kv-config", M + "/kv-mixed.yaml", "--k-bits", "2")));
        c.add(bad("Invalid value for option '--k-bits': was 9, must be between 1 and 8 bits", gen("--k-bits", "9")));
        c.add(bad("Invalid value for option '--v-bits': was 0, must be between 1 and 8 bits", gen("--v-bits", "0")));
        c.add(bad("was 0, must be more than 0 and at most 1 (1 = off)", gen("--top-p", "0")));
        c.add(bad("was -1, must be 0 (greedy) or positive", gen("--temperature", "-1")));
        c.add(bad("'--top-k': was -2, must be 0 or more", gen("--top-k", "-2")));
        c.add(bad("--group-size 48 does not divide the residual window of 128 tokens (KVTuner's default "
                + "residual_length)", gen("--group-size", "48")));
        c.add(bad("--group-size 64 does not divide the residual window of 32 tokens (the kivi scheme's "
                + "residual_length)", gen("--scheme", "kivi", "--group-size", "64")));
        c.add(bad("was 0, must be -1 (one group per head_dim row) or a positive number", gen("--group-size", "0")));
        c.add(bad("'--residual-length': was -1, must be 0 or more", gen("--residual-length", "-1")));
        c.add(bad("was 2, must be 0 (per token), 1 (per channel) or -1", gen("--axis-key", "2")));
        c.add(bad("--asym and --sym contradict each other", gen("--asym", "--sym")));
        c.add(bad("--fp runs the full-precision cache, so --k-bits has no effect", gen("--fp", "--k-bits", "4")));
        c.add(bad("'--scheme': was 'int4', must be pertoken or kivi (KVTuner's per-token-asym and per-channel-asym)", gen("--scheme", "int4")));
        c.add(bad("'--policy': was 'lazy', must be kvtuner or append", gen("--policy", "lazy")));
        c.add(bad("unknown backend 'nope'; available: ", gen("--backend", "nope")));
        c.add(bad("was 'gpu', must be cpu, cuda or cuda:N", gen("--device", "gpu")));
        c.add(bad("unknown runtime 'tensorrt'; available: ", gen("--runtime", "tensorrt")));
        c.add(bad("was 'replace:ab', must be error, replace (with a space) or replace:C", gen("--unknown-chars",
                "replace:ab")));
        c.add(bad("(U+00E9) at character 0, which is not in the model's 65-character vocabulary", "generate", "--model",
                M, "--prompt", "é"));
        c.add(bad("model directory " + tmp.resolve("nope") + " does not exist", "generate", "--model",
                tmp.resolve("nope").toString(), "--prompt", "x"));
        c.add(bad("--kv-config " + in("absent.yaml") + " does not exist", gen("--kv-config", in("absent.yaml"))));
        c.add(bad(in("trailing.json") + " goes on after its configuration (line 2, column 1); a configuration file "
                + "holds one JSON object", gen("--kv-config", in("trailing.json"))));
        c.add(bad(in("binary.yaml") + " is not UTF-8 text", gen("--kv-config", in("binary.yaml"))));
        c.add(bad(in("truncated-model") + "/config.json ends too early, it is truncated", "generate", "--model",
                in("truncated-model"), "--prompt", "x"));
        c.add(bad("/vocab.json is not a vocabulary kvq reads", "generate", "--model", in("bad-vocab-model"), "--prompt",
                "x"));
        c.add(bad("Unknown option: '--bogus'", gen("--bogus")));
        c.add(bad("Missing required option: '--prompt=TEXT'", "generate", "--model", M));
        // eval ppl / agree
        c.add(bad("--window 5000 needs 5,000 token positions, but kvq-demo-char has 1,024 (max_position_embeddings in "
                + "its config.json); give a --window of at most 1024", ppl("--window", "5000")));
        c.add(bad("Invalid value for option '--window': was 1, must be at least 2", ppl("--window", "1")));
        c.add(bad("Invalid value for option '--length': was -5, must be 0 or more", pplOwnData("--data", T, "--length", "-5")));
        c.add(bad("Invalid value for option '--offset': was -1, must be 0 or more", ppl("--offset", "-1")));
        c.add(bad("--offset 50000 is beyond the end of --data " + T + " (12000 characters)", ppl("--offset", "50000")));
        c.add(bad("--prefill 300 must be smaller than --window 256", ppl("--prefill", "300")));
        c.add(bad("Invalid value for option '--batch': was 0, must be at least 1", ppl("--batch", "0")));
        c.add(bad("the slice holds 50 tokens, fewer than one window of 256; give a longer --length",
                pplOwnData("--data", T, "--length", "50")));
        c.add(bad("--data " + in("absent.txt") + " does not exist", pplOwnData("--data", in("absent.txt"))));
        c.add(bad("--data " + in("binary.yaml") + " is not UTF-8 text (is it a binary file?)", pplOwnData("--data",
                in("binary.yaml"))));
        c.add(bad("--data " + inputs + " is a directory; give a file", pplOwnData("--data", inputs.toString())));
        c.add(bad("--sweep sets the scheme and the bits of each --pairs entry, so --k-bits would have no effect",
                ppl("--sweep", "pertoken", "--k-bits", "4")));
        c.add(bad("'--pairs' (K-V): was '9-4', bits must be between 1 and 8", ppl("--sweep", "kivi", "--pairs", "9-4")));
        c.add(bad("'--sweep' (pertoken|kivi): was 'int8', must be pertoken or kivi", ppl("--sweep", "int8")));
        c.add(bad("--report " + in("a-file") + " is a file; give a directory", "eval", "agree", "--model", M, "--data", T,
                "--report", in("a-file")));
        c.add(bad("--report /proc/kvq-report cannot be created", "eval", "ppl", "--model", M, "--data", T, "--length",
                "2000", "--report", "/proc/kvq-report"));
        c.add(bad("--report " + report + " already holds results of an earlier run (index.html, ppl_vs_bits.png); kvq "
                + "does not overwrite results: choose another directory, or pass --force to replace them", "eval", "ppl",
                "--model", M, "--data", T, "--length", "2000", "--report", report.toString()));
        // eval passkey / gsm8k / longbench
        c.add(bad("Invalid value for option '--limit': was -1, must be 0 or more", "eval", "passkey", "--model", M,
                "--data", T, "--limit", "-1"));
        c.add(bad(T + " line 1 is not valid JSON", "eval", "passkey", "--model", M, "--data", T, "--report",
                report.toString(), "--force"));
        c.add(bad("Invalid value for option '--shots': was -1, must be 0 or more", "eval", "gsm8k", "--model", M,
                "--data", in("gsm8k.jsonl"), "--shots", "-1"));
        c.add(bad("the longest GSM8K prompt (2,018 tokens with 0 shots) plus --max-new-tokens 256 needs 2,274 token "
                + "positions, but kvq-demo-char has 1,024", "eval", "gsm8k", "--model", M, "--data", in("gsm8k.jsonl"),
                "--shots", "0"));
        c.add(bad("--train (train.jsonl beside --data) " + in("train.jsonl") + " does not exist", "eval", "gsm8k",
                "--model", M, "--data", in("gsm8k.jsonl")));
        c.add(bad("--max-length 900 plus multi_news's 512 generated tokens needs 1,412 token positions, but "
                + "kvq-demo-char has 1,024 (max_position_embeddings in its config.json); give a --max-length of at most "
                + "512", "eval", "longbench", "--model", M, "--data", in("longbench"), "--max-length", "900", "--report",
                report.toString(), "--force"));
        c.add(bad("unknown LongBench task 'nope'", "eval", "longbench", "--model", M, "--data", in("longbench"),
                "--tasks", "nope"));
        c.add(bad("--data " + in("absent") + " does not exist", "eval", "longbench", "--model", M, "--data",
                in("absent")));
        // bench
        c.add(bad("Invalid value for option '--contexts' (N,N,...): was -5, must be at least 1", bench("--contexts",
                "-5")));
        c.add(bad("--contexts 50000000 plus --warmup-steps 32 plus --decode-steps 64 needs 50,000,096 token positions, "
                + "but kvq-demo-char has 1,024", bench("--contexts", "256,50000000")));
        c.add(bad("'2147483648' is not a whole number", bench("--contexts", "2147483648")));
        c.add(bad("--contexts 1000 plus --warmup-steps 32 plus --decode-steps 64 needs 1,096 token positions",
                bench("--contexts", "1000")));
        c.add(bad("--contexts 960 plus --warmup-steps 1 plus --decode-steps 64 needs 1,025 token positions",
                bench("--contexts", "960", "--warmup-steps", "1")));
        c.add(bad("Invalid value for option '--warmup-steps': was -1, must be 0 or more", bench("--warmup-steps",
                "-1")));
        c.add(bad("Invalid value for option '--decode-steps': was 0, must be at least 1", bench("--decode-steps",
                "0")));
        c.add(bad("Invalid value for option '--repeats': was -1, must be 0 or more", bench("--repeats", "-1")));
        // calibrate
        c.add(bad("Invalid value for option '--windows': was 0, must be at least 1", cal("--windows", "0")));
        c.add(bad("Invalid value for option '--kl-windows': was -1, must be 0 or more", cal("--kl-windows", "-1")));
        c.add(bad("Invalid value for option '--groups': was 0, must be at least 1", cal("--groups", "0")));
        c.add(bad("--groups was 9, must be between 1 and 4 (the layers of kvq-demo-char)", cal("--groups", "9")));
        c.add(bad("Invalid value for option '--length': was -1, must be 0 or more", cal("--length", "-1")));
        c.add(bad("--window 2048 needs 2,048 token positions", cal("--window", "2048")));
        c.add(bad("was 'per-row', must be pertoken or kivi", cal("--scheme", "per-row")));
        c.add(bad("--out " + earlier + " is a directory; give a file name such as " + earlier.resolve("profile.json"),
                "calibrate", "--model", M, "--data", T, "--out", earlier.toString()));
        c.add(bad("--out " + profile + " already holds results of an earlier run (profile.json, "
                + "profile-estimates/estimate-3.00bits.yaml); kvq does not overwrite results: choose another file, or "
                + "pass --force to replace them", "calibrate", "--model", M, "--data", T, "--out", profile.toString()));
        // tune
        c.add(bad("Invalid value for option '--trials': was 0, must be at least 1", tune("--max-avg-bits", "3.5",
                "--trials", "0")));
        c.add(bad("Invalid value for option '--windows': was 0, must be at least 1", tune("--max-avg-bits", "3.5",
                "--windows", "0")));
        c.add(bad("Invalid value for option '--threads': was 0, must be at least 1", tune("--max-avg-bits", "3.5",
                "--threads", "0")));
        c.add(bad("--max-avg-bits 1 is below 2.000, the fewest average bits of the profile's search space",
                tune("--max-avg-bits", "1")));
        c.add(bad("Invalid value for option '--max-avg-bits': was 9, must be an average of 1 to 8 bits",
                tune("--max-avg-bits", "9")));
        c.add(bad("--budgets 4 is above --max-avg-bits 3.5: the search stays within --max-avg-bits, so it finds nothing "
                + "for that budget", tune("--max-avg-bits", "3.5", "--budgets", "3,4")));
        c.add(bad("--budgets 1.5 is below 2.000, the fewest average bits of the profile's search space",
                tune("--max-avg-bits", "3.5", "--budgets", "1.5")));
        c.add(bad("--objective was 'bleu', must be ppl, kl, passkey or gsm8k", tune("--max-avg-bits", "3.5",
                "--objective", "bleu")));
        c.add(bad("--profile " + in("absent.json") + " does not exist", "tune", "--model", M, "--profile",
                in("absent.json"), "--data", T, "--max-avg-bits", "3.5", "--out-dir", tuned.toString(), "--force"));
        c.add(bad("--window 4096 needs 4,096 token positions", tune("--max-avg-bits", "3.5", "--window", "4096")));
        c.add(bad("--out-dir /proc/kvq-tuned cannot be created", "tune", "--model", M, "--profile", profile.toString(),
                "--data", T, "--max-avg-bits", "3.5", "--out-dir", "/proc/kvq-tuned"));
        c.add(bad("--out-dir " + tuned + " already holds results of an earlier run (index.html, best-3.50bits.kvq.yaml, "
                + "best-3.50bits.yaml, front-00-2.000bits.yaml and 2 more)", "tune", "--model", M, "--profile",
                profile.toString(), "--data", T, "--max-avg-bits", "3.5", "--out-dir", tuned.toString()));
        // serve, serve-bench
        c.add(bad("--kv-memory must be a size such as 8GiB, 512MiB or 2GB, was 'lots'", serve("--kv-memory", "lots")));
        c.add(bad("--kv-memory 10 (10 bytes) holds no sequence: one of a single token needs", serve("--kv-memory", "10")));
        c.add(bad("--port was 70000, must be between 0 and 65535", serve("--port", "70000")));
        c.add(bad("cannot be bound on 127.0.0.1", serve("--port", String.valueOf(busy.getLocalPort()))));
        c.add(bad("--host no.such.host.invalid is not an address", serve("--host", "no.such.host.invalid")));
        c.add(bad("does not exist", "serve", "--model", in("absent-model")));
        c.add(bad("--prompt-tokens 64 plus --max-tokens 2000 needs 2,064 token positions", "serve-bench", "--model", M,
                "--kv-memory", "8MiB", "--max-tokens", "2000"));
        c.add(bad("holds no request under fp32", "serve-bench", "--model", M, "--kv-memory", "64KiB"));
        c.add(bad("kvq serve-bench always runs the full-precision cache beside the configurations; drop --fp",
                "serve-bench", "--model", M, "--kv-memory", "8MiB", "--fp"));
        // demo, config check
        c.add(bad("the prompt (58 tokens) plus --max-new-tokens 2000 needs 2,058 token positions, but kvq-demo-char has "
                + "1,024 (max_position_embeddings in its config.json); give a --max-new-tokens of at most 966", "demo", "--model", M,
                "--max-new-tokens", "2000"));
        c.add(bad("Invalid value for option '--layers': was 0, must be at least 1", "config", "check",
                M + "/kv-mixed.yaml", "--layers", "0"));
        return c.stream();
    }

    @org.junit.jupiter.api.AfterAll
    static void freePort() throws IOException {
        busy.close();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("cases")
    void refusedBeforeAnyWorkWithExitCode2(String name, String expected, String[] args) throws IOException {
        CommandTest.Run r = kvq(args);
        assertEquals(2, r.exit(), r.err());
        assertTrue(r.err().contains(expected), "expected \"" + expected + "\" in:\n" + r.err());
        assertEquals(1, r.err().lines().count(), "one line, no stack trace:\n" + r.err());
        assertTrue(r.err().startsWith("kvq: "), r.err());
        assertEquals("", r.out(), "no work, no output");
        before.assertSame(Snapshot.of(earlier));
    }

    @Test
    void debugPrintsTheStackTraceBesideTheMessage() {
        CommandTest.Run plain = kvq("generate", "--model", tmp.resolve("nope").toString(), "--prompt", "x");
        CommandTest.Run debug = kvq("generate", "--model", tmp.resolve("nope").toString(), "--prompt", "x", "--debug");
        assertEquals(2, plain.exit());
        assertEquals(2, debug.exit());
        assertFalse(plain.err().contains("\tat "), plain.err());
        assertTrue(debug.err().startsWith(plain.err().strip()), debug.err());
        assertTrue(debug.err().contains("\tat dev.kvq.generate"), debug.err());
    }

    /** Every file under a directory: bytes and modification time. */
    record Snapshot(List<String> entries) {
        static Snapshot of(Path root) throws IOException {
            List<String> out = new ArrayList<>();
            try (Stream<Path> files = Files.walk(root)) {
                for (Path p : files.sorted().toList()) {
                    String rel = root.relativize(p).toString();
                    if (Files.isDirectory(p)) {
                        out.add(rel + "/");
                    } else {
                        out.add(rel + " " + Files.getLastModifiedTime(p).toMillis() + " "
                                + new String(Files.readAllBytes(p), StandardCharsets.ISO_8859_1).hashCode() + " "
                                + Files.size(p));
                    }
                }
            }
            return new Snapshot(out);
        }

        void assertSame(Snapshot now) {
            assertEquals(String.join("\n", entries), String.join("\n", now.entries()), "earlier results changed");
        }
    }
}
