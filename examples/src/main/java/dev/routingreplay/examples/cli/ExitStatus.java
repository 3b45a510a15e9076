package dev.routingreplay.examples.cli;

/**
 * The exit statuses of the {@code r3} commands: one per kind of outcome, so a script can tell a usage mistake from a
 * missing store or an output that is already there. Every non-zero status comes with one line on standard error that
 * names the command, the option or path, and the value; a stack trace follows only with {@code --verbose}.
 */
public enum ExitStatus {
    /** Done; for {@code run} and {@code verify}, every stored request matched. */
    OK(0),
    /** {@code run} or {@code verify} found routing that does not match, or requests missing or extra. */
    CHECK_FAILED(1),
    /** A bad command line: an unknown or missing option, a value that is malformed or out of range. */
    USAGE(2),
    /** The store is missing, unreadable, not a store, or failed while being read or written. */
    STORE(3),
    /** The output is already there: {@code run --out} holds a store, {@code export --out} is a file or holds files. */
    OUTPUT_EXISTS(4),
    /** Writing the output failed (permissions, a full disk). */
    OUTPUT_IO(5),
    /** A resource the command needs is unavailable: the CUDA backend, the server's port. */
    UNAVAILABLE(6),
    /** A bug: anything else. {@code --verbose} prints the stack trace to report. */
    INTERNAL(70);

    private final int code;

    ExitStatus(int code) {
        this.code = code;
    }

    /** The process exit code. */
    public int code() {
        return code;
    }
}
