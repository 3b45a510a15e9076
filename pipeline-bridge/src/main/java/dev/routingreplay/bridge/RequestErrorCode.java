package dev.routingreplay.bridge;

/** The {@code code} of a REQUEST_ERROR (protocol version 3): what kind of fault one request had. */
public enum RequestErrorCode {
    /** FINISHED or ABORTED of a request id that is not live: never admitted, or already finished or aborted. */
    NOT_LIVE(1);

    private final int code;

    RequestErrorCode(int code) {
        this.code = code;
    }

    /** The wire value ({@code u16}). */
    public int code() {
        return code;
    }
}
