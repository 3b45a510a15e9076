package dev.routingreplay.bridge;

/** The {@code code} of a REQUEST_ERROR (protocol version 3): what kind of fault one request (or one step) had. */
public enum RequestErrorCode {
    /** FINISHED or ABORTED of a request id that is not live: never admitted, or already finished or aborted. */
    NOT_LIVE(1),
    /**
     * A step held expert ids or slot mapping entries out of range (request id empty; the message names the step, the
     * counts and the first token of each kind): those tokens' rows were dropped. Abort the request a bad slot entry
     * belonged to: its position keeps whatever the slot held (docs/contract.md).
     */
    STEP_FAULT(2);

    private final int code;

    RequestErrorCode(int code) {
        this.code = code;
    }

    /** The wire value ({@code u16}). */
    public int code() {
        return code;
    }
}
