package dev.kvq.cli;

import dev.kvq.ErrorCode;
import dev.kvq.KvqException;
import java.io.PrintWriter;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParseResult;
import picocli.CommandLine.ScopeType;

/** {@code kvq}: KV-cache quantization for the JVM. */
@Command(name = "kvq", mixinStandardHelpOptions = true, versionProvider = Main.Version.class,
        description = "Sensitivity-aware, layer-wise mixed-precision KV-cache quantization (KVTuner) for the JVM.",
        subcommands = {DemoCommand.class, GenerateCommand.class, EvalCommand.class, BenchCommand.class, CalibrateCommand.class,
            TuneCommand.class, ServeCommand.class, ServeBenchCommand.class, BackendsCommand.class,
            ConfigCommand.class, CommandLine.HelpCommand.class})
public final class Main {
    /** Exit code for bad input: configuration, arguments, files. */
    public static final int EXIT_INPUT = 2;
    /** Exit code for failures while running. */
    public static final int EXIT_FAILURE = 1;

    @Option(names = "--debug", scope = ScopeType.INHERIT,
            description = "On a failure, print the stack trace beside the message.")
    boolean debug;

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
        showDefaults(cmd);
        cmd.setParameterExceptionHandler((e, args) -> {
            CommandLine c = e.getCommandLine();
            PrintWriter err = c.getErr();
            err.println("kvq: " + e.getMessage() + " (" + c.getCommandSpec().qualifiedName() + " --help lists the options)");
            CommandLine.UnmatchedArgumentException.printSuggestions(e, err);
            err.flush();
            return EXIT_INPUT;
        });
        cmd.setExecutionStrategy(Main::execute);
        cmd.setExecutionExceptionHandler((e, commandLine, parseResult) -> {
            PrintWriter err = commandLine.getErr();
            boolean debug = debug(parseResult);
            int code;
            if (e instanceof KvqException k) {
                err.println("kvq: " + k.getMessage());
                code = k.code() == ErrorCode.RUNTIME_FAILURE ? EXIT_FAILURE : EXIT_INPUT;
            } else {
                err.println("kvq: unexpected failure: " + e + (debug ? "" : " (--debug prints the stack trace)"));
                code = EXIT_FAILURE;
            }
            if (debug) {
                e.printStackTrace(err);
            }
            err.flush();
            return code;
        });
        return cmd;
    }

    /** Runs the chosen command; a {@link CheckedCommand} is checked first, and its claimed output released after. */
    private static int execute(ParseResult parseResult) {
        Integer help = CommandLine.executeHelpRequest(parseResult);
        if (help != null) {
            return help;
        }
        ParseResult leaf = parseResult;
        while (leaf.subcommand() != null) {
            leaf = leaf.subcommand();
        }
        if (!(leaf.commandSpec().userObject() instanceof CheckedCommand command)) {
            return new CommandLine.RunLast().execute(parseResult);
        }
        Output claimed;
        try {
            claimed = command.check();
        } catch (RuntimeException e) {
            throw new CommandLine.ExecutionException(leaf.commandSpec().commandLine(), e.getMessage(), e);
        }
        try (Output ignored = claimed) {
            return new CommandLine.RunLast().execute(parseResult);
        }
    }

    private static boolean debug(ParseResult parseResult) {
        for (ParseResult p = parseResult; p != null; p = p.subcommand()) {
            if (p.hasMatchedOption("--debug")) {
                return true;
            }
        }
        return false;
    }

    /** Every command's help shows the default of each option that has one. */
    private static void showDefaults(CommandLine cmd) {
        cmd.getCommandSpec().usageMessage().showDefaultValues(true);
        cmd.getSubcommands().values().forEach(Main::showDefaults);
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
