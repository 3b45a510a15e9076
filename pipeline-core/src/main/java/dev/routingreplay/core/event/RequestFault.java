package dev.routingreplay.core.event;

/**
 * Output only: the pipeline emits this in place of a lifecycle event it refused because of one request's fault (a
 * finish or abort of an id that is not live), after the events before it took effect. The refused event had no
 * effect; the run and every other request go on. An engine never emits it (the pipeline rejects it as input).
 *
 * @param requestId the request the fault belongs to
 * @param refused the event that was refused
 * @param message what was wrong, naming the id
 */
public record RequestFault(String requestId, EngineEvent refused, String message) implements EngineEvent {
    @Override
    public String describe() {
        return "fault of request " + requestId + ": " + message;
    }
}
