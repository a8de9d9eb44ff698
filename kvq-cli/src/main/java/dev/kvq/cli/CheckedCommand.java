package dev.kvq.cli;

/**
 * A command whose options are checked before it runs. {@link Main} calls {@link #check()} after parsing and before
 * {@code call()}; a failure there exits with code 2 before any work. What {@code check()} returns (the claimed output
 * location, or null) is closed after {@code call()}, whether it succeeded or not.
 */
interface CheckedCommand {
    /**
     * Checks the options against each other, the files they name and the model they load, and claims the command's
     * output location (see {@link Output}); returns that claim, or null when the command writes no files.
     */
    Output check();
}
