package dev.routingreplay.examples.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import picocli.CommandLine;

/**
 * A command run in-process: its exit status and what it printed.
 *
 * @param status the exit status
 * @param out standard output
 * @param err standard error
 */
public record CommandRun(int status, String out, String err) {
    /** Runs {@code cli} (with {@link CommandErrors} installed) on {@code args}, capturing both streams. */
    public static CommandRun of(CommandLine cli, String... args) {
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        cli.setOut(new PrintWriter(out, true));
        cli.setErr(new PrintWriter(err, true));
        int status = cli.execute(args);
        return new CommandRun(status, out.toString(), err.toString());
    }

    /** Asserts a failure with {@code status}: one line on standard error that starts with {@code prefix} and holds each of {@code parts}. */
    public CommandRun assertFails(ExitStatus expected, String prefix, String... parts) {
        assertEquals(expected.code(), status, this::toString);
        assertEquals(1, err.lines().count(), "one line: " + err);
        assertTrue(err.startsWith(prefix), "starts with '" + prefix + "': " + err);
        for (String part : parts) {
            assertTrue(err.contains(part), "names '" + part + "': " + err);
        }
        assertFalse(err.contains("\tat "), "no stack trace without --verbose: " + err);
        return this;
    }
}
