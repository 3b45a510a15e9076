package dev.routingreplay.core.event;

/**
 * One event of the engine's ordered stream. Capture steps and lifecycle events travel in one {@code Flux}, and
 * the pipeline applies their effects to the sink in exactly that order.
 */
public sealed interface EngineEvent
        permits CaptureStep, RequestAdmitted, RequestFinished, RequestAborted, SlotsMoved, RoundCleared, RequestFault {

    /** A short description for error messages and logs, e.g. {@code step 42} or {@code finish of request r7}. */
    String describe();
}
