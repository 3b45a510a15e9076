package dev.routingreplay.bridge;

/**
 * A message the sidecar refuses: the session answers {@code FAILED} with {@link #code()} and this message, which
 * names the message type, the field and the value (e.g. {@code STEP: buffer=9 is out of range for 4 buffers}).
 */
public final class ProtocolException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final FailureCode code;

    /** A refusal of kind {@code code}. */
    public ProtocolException(FailureCode code, String message) {
        super(message);
        this.code = code;
    }

    /** A refusal of kind {@code code} caused by {@code cause}. */
    public ProtocolException(FailureCode code, String message, Throwable cause) {
        super(message, cause);
        this.code = code;
    }

    /** The failure code the session answers with. */
    public FailureCode code() {
        return code;
    }
}
