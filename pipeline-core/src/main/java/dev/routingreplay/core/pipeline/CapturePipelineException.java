package dev.routingreplay.core.pipeline;

import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;

/**
 * The error a pipeline terminates with: names the event (step id, or lifecycle event) whose processing failed and
 * carries the original error as its cause.
 */
public class CapturePipelineException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final transient EngineEvent event;

    /** Wraps {@code cause}, which happened while processing {@code event}. */
    public CapturePipelineException(EngineEvent event, String stage, Throwable cause) {
        super(event.describe() + ": " + stage + " failed: " + cause.getMessage(), cause);
        this.event = event;
    }

    /** The event being processed when the error happened. */
    public EngineEvent event() {
        return event;
    }

    /** The step id when the event is a capture step, else -1. */
    public long stepId() {
        return event instanceof CaptureStep s ? s.stepId() : -1;
    }
}
