package dev.kvq.cli;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.io.PrintWriter;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** {@code kvq}: KV-cache quantization for the JVM. */
@Command(name = "kvq", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = "Sensitivity-aware, layer-wise mixed-precision KV-cache quantization (KVTuner) for the JVM.",
        subcommands = {DemoCommand.class, GenerateCommand.class, EvalCommand.class, BenchCommand.class, CalibrateCommand.class,
            TuneCommand.class, BackendsCommand.class,
            ConfigCommand.class, CommandLine.HelpCommand.class})
public final class Main {
    /** Exit code for bad input: configuration, arguments, files. */
    public static final int EXIT_INPUT = 2;
    /** Exit code for failures while running. */
    public static final int EXIT_FAILURE = 1;

    public static void main(String[] args) {
        System.exit(run(args, new PrintWriter(System.out, true), new PrintWriter(System.err, true)));
    }

    /** Runs the command with the given output streams and returns the exit code (tests call this). */
    public static int run(String[] args, PrintWriter out, PrintWriter err) {
        CommandLine cmd = commandLine();
        cmd.setOut(out);
        cmd.setErr(err);
        return cmd.execute(args);
    }

    static CommandLine commandLine() {
        CommandLine cmd = new CommandLine(new Main());
        cmd.setExecutionExceptionHandler((e, commandLine, parseResult) -> {
            PrintWriter err = commandLine.getErr();
            if (e instanceof KvqException k) {
                err.println("kvq: " + k.getMessage());
                err.flush();
                return k.code() == ErrorCode.RUNTIME_FAILURE ? EXIT_FAILURE : EXIT_INPUT;
            }
            err.println("kvq: unexpected failure: " + e);
            e.printStackTrace(err);
            err.flush();
            return EXIT_FAILURE;
        });
        return cmd;
    }

    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = Main.class.getModule().getDescriptor() != null
                    ? Main.class.getModule().getDescriptor().rawVersion().orElse("dev") : "dev";
            return new String[] {"kvq " + v + " (Java " + Runtime.version() + ")"};
        }
    }
}
