package dev.kvq.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.testkit.Repo;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/**
 * The README's "Use from Java" program is this module's {@link QuantizedGeneration}, character for character, and it
 * runs on the demo model in a JVM started as a library user's would be: class path, no flags, no Vector API module.
 */
class QuantizedGenerationTest {
    private static final Pattern PERPLEXITY = Pattern.compile(
            "perplexity (\\d+\\.\\d+), full precision (\\d+\\.\\d+), top-1 agreement (\\d\\.\\d+) over (\\d+) tokens");
    private static final Pattern BYTES = Pattern.compile("(\\d+) new tokens, ([\\d,]+) KV bytes \\(float16 would hold "
            + "([\\d,]+)\\)");

    @Test
    void runsOnTheDemoModelWithoutJvmFlags() throws Exception {
        assertTrue(ModuleLayer.boot().findModule("jdk.incubator.vector").isEmpty(),
                "this JVM was started with the Vector API module; a library user's need not be");
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        PrintStream stdout = System.out;
        System.setOut(new PrintStream(captured, true, StandardCharsets.UTF_8));
        try {
            QuantizedGeneration.main(new String[] {Repo.demoModel().toString()});
        } finally {
            System.setOut(stdout);
        }
        String out = captured.toString(StandardCharsets.UTF_8);
        stdout.println(out);
        List<String> lines = out.lines().toList();
        assertTrue(lines.getFirst().startsWith("cache: vanilla append, K4.00/V2.00 bits, axes 1/0, group 32, "
                + "residual 32"), lines.getFirst());

        Matcher bytes = BYTES.matcher(out);
        assertTrue(bytes.find(), out);
        assertEquals(160, Integer.parseInt(bytes.group(1)), "the demo model has no end token: all 160 are generated");
        long kv = Long.parseLong(bytes.group(2).replace(",", ""));
        long fp16 = Long.parseLong(bytes.group(3).replace(",", ""));
        assertTrue(kv < fp16, kv + " KV bytes against float16's " + fp16);
        String streamed = out.substring(out.indexOf('\n') + 1, out.lastIndexOf(bytes.group()));
        assertTrue(streamed.strip().length() > 100, "the streamed continuation: " + streamed);

        Matcher ppl = PERPLEXITY.matcher(out);
        assertTrue(ppl.find(), out);
        double quantized = Double.parseDouble(ppl.group(1));
        double fp = Double.parseDouble(ppl.group(2));
        double agreement = Double.parseDouble(ppl.group(3));
        // the demo model's sample text: perplexity near 3.7 (README, GPU section); KIVI K4V2 costs well under 2%
        assertTrue(fp > 2 && fp < 6, "full precision " + fp);
        assertTrue(Math.abs(quantized / fp - 1) < 0.02, "K4V2 " + quantized + " against " + fp);
        assertTrue(agreement > 0.9 && agreement <= 1, "agreement " + agreement);
        assertTrue(Long.parseLong(ppl.group(4)) > 2000, ppl.group(4) + " tokens");
    }

    @Test
    void theReadmeShowsThisProgramAndTheLibrarysCoordinates() throws Exception {
        String readme = Files.readString(Repo.root().resolve("README.md"));
        int section = readme.indexOf("\n## Use from Java\n");
        assertTrue(section >= 0, "README has no 'Use from Java' section");
        String rest = readme.substring(section);
        Path source = Repo.root().resolve("kvq-examples/src/main/java/dev/kvq/examples/QuantizedGeneration.java");
        String program = codeBlock(rest, "```java\n");
        assertEquals(Files.readString(source), program, "the README's program differs from " + source);
        String maven = codeBlock(rest, "```xml\n");
        assertTrue(maven.contains("<groupId>dev.kvq</groupId>") && maven.contains("<artifactId>kvq-lib</artifactId>")
                && maven.contains("<version>" + System.getProperty("kvq.version") + "</version>"), maven);
    }

    private static String codeBlock(String text, String fence) {
        int start = text.indexOf(fence);
        assertTrue(start >= 0, "no " + fence.strip() + " block");
        int end = text.indexOf("```\n", start + fence.length());
        return text.substring(start + fence.length(), end);
    }
}
