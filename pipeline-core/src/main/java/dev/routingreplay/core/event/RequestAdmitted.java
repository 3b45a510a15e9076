package dev.routingreplay.core.event;

/**
 * A request entered the engine. The pipeline tracks admitted ids so that a finish or abort of an unknown id,
 * and a second admission of a live id, fail with a clear error instead of mixing two requests' routing.
 *
 * @param requestId the engine's request id, unique among live requests
 */
public record RequestAdmitted(String requestId) implements EngineEvent {
    /** Rejects a null or empty id. */
    public RequestAdmitted {
        RequestIds.check(requestId);
    }

    @Override
    public String describe() {
        return "admission of request " + requestId;
    }
}
