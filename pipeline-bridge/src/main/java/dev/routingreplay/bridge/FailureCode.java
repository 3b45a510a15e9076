package dev.routingreplay.bridge;

/** The failure codes of a {@code FAILED} message (docs/engine-bridge.md): what kind of failure ended a session. */
public enum FailureCode {
    /** A bad frame, an unknown type, a message out of order (a STEP before HELLO), a field out of range. */
    PROTOCOL(1),
    /** HELLO refused: version, backend, shape, dtype, buffer count or size, a handle the device could not open. */
    HELLO(2),
    /** The capture pipeline failed; the message is its error. */
    PIPELINE(3),
    /** Another engine is connected, or the sidecar is shutting down. */
    BUSY(4);

    private final int code;

    FailureCode(int code) {
        this.code = code;
    }

    /** The code on the wire. */
    public int code() {
        return code;
    }

    /** The constant for {@code code}. */
    public static FailureCode of(int code) {
        for (FailureCode c : values()) {
            if (c.code == code) {
                return c;
            }
        }
        throw new IllegalArgumentException("unknown failure code " + code);
    }
}
