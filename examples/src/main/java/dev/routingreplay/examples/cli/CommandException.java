package dev.routingreplay.examples.cli;

/**
 * A command failed for a reason the user can fix; {@link CommandErrors} prints the message as one line and exits with
 * {@link #status()}.
 */
public class CommandException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final ExitStatus status;

    /** A failure of kind {@code status}; {@code message} names the option or path and the value. */
    public CommandException(ExitStatus status, String message) {
        super(message);
        this.status = status;
    }

    /** A failure of kind {@code status} caused by {@code cause}. */
    public CommandException(ExitStatus status, String message, Throwable cause) {
        super(message, cause);
        this.status = status;
    }

    /** The exit status this failure ends the command with. */
    public ExitStatus status() {
        return status;
    }
}
