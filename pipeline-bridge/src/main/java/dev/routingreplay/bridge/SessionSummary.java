package dev.routingreplay.bridge;

import java.time.Duration;

/**
 * How one engine session ended, emitted by {@link SidecarServer#sessions()} once the session's pipeline released its
 * ring and everything it received is stored (or the pipeline failed).
 *
 * @param session the session's number in this server, from 1
 * @param engineName the engine's name from HELLO (empty before HELLO)
 * @param outcome how it ended
 * @param reason the FAILED message, or what ended the connection; empty after a FAREWELL
 * @param steps STEP messages handed to the pipeline
 * @param tokens tokens of those steps
 * @param requestsFinished FINISHED messages handed to the pipeline
 * @param requestErrors REQUEST_ERRORs: lifecycle messages refused as their request's fault, and steps with ids or slots
 *     out of range
 * @param feedWaitNanos time the session's feed thread waited for a free ring slot
 * @param duration from connection to the end of the session
 */
public record SessionSummary(long session, String engineName, Outcome outcome, String reason, long steps, long tokens,
        long requestsFinished, long requestErrors, long feedWaitNanos, Duration duration) {

    /** How a session ended. */
    public enum Outcome {
        /** GOODBYE, everything stored, FAREWELL sent. */
        FAREWELL,
        /** The engine disconnected without GOODBYE; what it sent is stored. */
        DISCONNECTED,
        /** FAILED was sent (protocol, HELLO, pipeline, busy or shutdown); what was received before is stored unless the pipeline failed. */
        FAILED
    }

    /** One line for logs. */
    public String describe() {
        return String.format("session %d%s ended: %s%s; steps=%d tokens=%d finished=%d%s, feed waited %.1f ms for ring slots, %.1f s",
                session, engineName.isEmpty() ? "" : " (engine " + engineName + ")", outcome.name().toLowerCase(java.util.Locale.ROOT),
                reason.isEmpty() ? "" : " (" + reason + ")", steps, tokens, requestsFinished,
                requestErrors == 0 ? "" : " requestErrors=" + requestErrors, feedWaitNanos / 1e6, duration.toNanos() / 1e9);
    }
}
