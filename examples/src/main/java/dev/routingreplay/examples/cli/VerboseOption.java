package dev.routingreplay.examples.cli;

import picocli.CommandLine.Option;

/** The {@code --verbose} option (a picocli mixin): errors print their stack trace after the one-line message. */
public final class VerboseOption {
    /** The option's name, as {@link CommandErrors} looks it up. */
    public static final String NAME = "--verbose";

    @Option(names = NAME, description = "On an error, print the stack trace after the one-line message.")
    boolean verbose;
}
