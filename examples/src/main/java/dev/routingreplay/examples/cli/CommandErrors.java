package dev.routingreplay.examples.cli;

import dev.routingreplay.sink.StoreException;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.UncheckedIOException;
import java.nio.file.FileAlreadyExistsException;
import picocli.CommandLine;
import picocli.CommandLine.IExecutionExceptionHandler;
import picocli.CommandLine.IParameterExceptionHandler;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.ParseResult;

/**
 * How the {@code r3} commands report failures: one line on standard error, {@code <command>: <what was wrong>}, naming
 * the option or path and the value, and an {@link ExitStatus} per kind of failure. A stack trace follows only when
 * {@code --verbose} ({@link VerboseOption}) was given. Install it on the root command with {@link #install}.
 */
public final class CommandErrors implements IExecutionExceptionHandler, IParameterExceptionHandler {
    private CommandErrors() {
    }

    /** Sets both handlers on {@code cli} (the root: subcommands use the root's handlers) and returns it. */
    public static CommandLine install(CommandLine cli) {
        CommandErrors handler = new CommandErrors();
        return cli.setExecutionExceptionHandler(handler).setParameterExceptionHandler(handler);
    }

    /** A bad command line (also a {@link ParameterException} thrown by a command's own validation): {@link ExitStatus#USAGE}. */
    @Override
    public int handleParseException(ParameterException ex, String[] args) {
        CommandLine cmd = ex.getCommandLine();
        String name = name(cmd);
        PrintWriter err = cmd.getErr();
        err.println(name + ": " + oneLine(ex.getMessage()) + " (" + name + " --help lists the options)");
        err.flush();
        return ExitStatus.USAGE.code();
    }

    /** A failure while the command ran: the status of its kind, one line, and the stack trace only with --verbose. */
    @Override
    public int handleExecutionException(Exception ex, CommandLine cmd, ParseResult parsed) {
        PrintWriter err = cmd.getErr();
        String name = name(cmd);
        Throwable known = known(ex);
        ExitStatus status = status(known);
        boolean verbose = verbose(parsed);
        String message = status == ExitStatus.INTERNAL
                ? "internal error: " + ex + (verbose ? "" : " (rerun with --verbose for the stack trace)")
                : known instanceof CommandException || known instanceof StoreException ? known.getMessage()
                : known.getClass().getSimpleName() + ": " + known.getMessage();
        err.println(name + ": " + oneLine(message));
        if (verbose) {
            ex.printStackTrace(err);
        }
        err.flush();
        return status.code();
    }

    /** The first exception in the cause chain whose kind is known, else {@code ex}. */
    private static Throwable known(Throwable ex) {
        for (Throwable t = ex; t != null; t = t.getCause()) {
            if (status(t) != ExitStatus.INTERNAL) {
                return t;
            }
            if (t.getCause() == t) {
                break;
            }
        }
        return ex;
    }

    private static ExitStatus status(Throwable t) {
        if (t instanceof CommandException c) {
            return c.status();
        }
        if (t instanceof StoreException) {
            return ExitStatus.STORE;
        }
        if (t instanceof FileAlreadyExistsException) {
            return ExitStatus.OUTPUT_EXISTS;
        }
        if (t instanceof IOException || t instanceof UncheckedIOException) {
            return ExitStatus.OUTPUT_IO;
        }
        return ExitStatus.INTERNAL;
    }

    /** The command as the user typed it: {@code r3 export}, whatever name the subcommand's class declares. */
    private static String name(CommandLine cmd) {
        CommandLine parent = cmd.getParent();
        if (parent == null) {
            return cmd.getCommandName();
        }
        String own = parent.getSubcommands().entrySet().stream().filter(e -> e.getValue() == cmd).map(java.util.Map.Entry::getKey)
                .findFirst().orElse(cmd.getCommandName());
        return name(parent) + " " + own;
    }

    private static boolean verbose(ParseResult parsed) {
        for (ParseResult p = parsed; p != null; p = p.subcommand()) {
            if (p.hasMatchedOption(VerboseOption.NAME)) {
                return true;
            }
        }
        return false;
    }

    private static String oneLine(String message) {
        return String.valueOf(message).replaceAll("\\s*[\\r\\n]+\\s*", "; ").strip();
    }
}
