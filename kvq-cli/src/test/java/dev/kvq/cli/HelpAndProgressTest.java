package dev.kvq.cli;

import static dev.kvq.cli.CommandTest.kvq;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.kvq.eval.Progress;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;
import picocli.CommandLine.Model.OptionSpec;

class HelpAndProgressTest {
    private static List<CommandLine> all(CommandLine c) {
        List<CommandLine> out = new ArrayList<>(List.of(c));
        c.getSubcommands().values().forEach(s -> out.addAll(all(s)));
        return out;
    }

    @Test
    void everyOptionOfEveryCommandIsDescribedAndItsHelpShowsItsDefault() {
        int options = 0;
        for (CommandLine c : all(Main.commandLine())) {
            String name = c.getCommandSpec().qualifiedName();
            CommandTest.Run help = kvq((name.replaceFirst("^kvq ?", "") + " --help").trim().split(" "));
            if (name.equals("kvq help")) {
                continue;
            }
            assertEquals(0, help.exit(), name + ": " + help.err());
            for (OptionSpec o : c.getCommandSpec().options()) {
                options++;
                String description = String.join(" ", o.description());
                assertFalse(description.isBlank(), name + " " + o.longestName() + " has no description");
                if (o.defaultValue() != null) {
                    assertTrue(help.out().contains("Default: " + o.defaultValue()), name + " --help does not show the "
                            + "default of " + o.longestName() + " (" + o.defaultValue() + "):\n" + help.out());
                }
            }
        }
        assertTrue(options > 150, "walked " + options + " options");
    }

    @Test
    void schemesAreSpelledAlikeByEveryCommand() {
        for (String command : List.of("generate", "calibrate")) {
            String help = kvq(command, "--help").out();
            assertTrue(help.contains("--scheme=pertoken|kivi"), command + ":\n" + help);
        }
        assertTrue(kvq("eval", "ppl", "--help").out().contains("--sweep=pertoken|kivi"));
    }

    @Test
    void longWorkPrintsALineEveryIntervalWhenNotOnATerminal() throws InterruptedException {
        StringWriter sink = new StringWriter();
        AtomicLong clock = new AtomicLong();
        Progress progress = new ConsoleProgress.Lines(new PrintWriter(sink), 30, clock::get);
        try (Progress.Task task = progress.start("windows", 4)) {
            task.step(1);
            task.message("ppl 3.3769");
            clock.set(12_000_000_000L);
            Thread.sleep(200);
        }
        List<String> lines = sink.toString().lines().toList();
        assertTrue(lines.size() >= 2, sink.toString());
        assertTrue(lines.contains("kvq: windows 1/4 (25%), 0:12 elapsed, about 0:36 left, ppl 3.3769"), sink.toString());
        assertEquals("kvq: windows 1/4 (25%), 0:12 in all, ppl 3.3769", lines.getLast());
    }

    @Test
    void shortWorkPrintsNothing() {
        StringWriter sink = new StringWriter();
        Progress progress = new ConsoleProgress.Lines(new PrintWriter(sink), 60_000, System::nanoTime);
        try (Progress.Task task = progress.start("windows", 4)) {
            task.step(4);
        }
        assertEquals("", sink.toString());
    }
}
