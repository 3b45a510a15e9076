package dev.routingreplay.core.event;

/**
 * A request was aborted: no routing record is written for it, and its id stops being live.
 *
 * @param requestId the aborted request
 */
public record RequestAborted(String requestId) implements EngineEvent {
    /** Rejects a null or empty id. */
    public RequestAborted {
        RequestIds.check(requestId);
    }

    @Override
    public String describe() {
        return "abort of request " + requestId;
    }
}
