package dev.routingreplay.sink;

import java.nio.file.Path;

/** A problem with the routing store on disk: the message names the path and the problem. */
public class StoreException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final transient Path path;

    /** A problem at {@code path}. */
    public StoreException(Path path, String problem) {
        super(path + ": " + problem);
        this.path = path;
    }

    /** A problem at {@code path} caused by {@code cause}. */
    public StoreException(Path path, String problem, Throwable cause) {
        super(path + ": " + problem + (cause.getMessage() == null ? "" : ": " + cause.getMessage()), cause);
        this.path = path;
    }

    /** The message without the path: what is wrong, for answers that must not show where the store is. */
    public String problem() {
        String message = getMessage();
        String prefix = path + ": ";
        return message.startsWith(prefix) ? message.substring(prefix.length()) : message;
    }

    /** The file or folder the problem is in. */
    public Path path() {
        return path;
    }
}
