package dev.routingreplay.core.pipeline;

import dev.routingreplay.core.InvalidEventException;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFault;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import java.util.HashSet;
import java.util.Set;

/**
 * Checks each engine event against the run's ring spec and the live request ids before any of its effects is
 * applied, on the engine thread. The ids and ranges of a capture's rows are checked later, by the pack on the device,
 * and slots of finishes and moves by the store (a bad one becomes a missing row, never a failure of the run).
 *
 * <p>A capture that does not fit the run (shape, size, an overwritten buffer) fails with an
 * {@link InvalidEventException} naming the field and the value: it breaks the protocol for every request in it. A
 * lifecycle event that is one request's fault (a finish or abort of an id that is not live) is answered with a
 * message for that request only, and the run goes on.
 */
final class EventValidator {
    private final RingSpec spec;
    /** Engine thread only. */
    private final Set<String> liveRequests = new HashSet<>();

    EventValidator(RingSpec spec) {
        this.spec = spec;
    }

    /**
     * Checks {@code event} and, for a lifecycle event, updates the live request ids; allocates nothing for a capture.
     *
     * @return null when the event may take effect, or what is wrong with it when it is one request's fault (it must
     *     then take no effect)
     * @throws InvalidEventException when the event breaks the run's contract
     */
    String check(EngineEvent event) {
        if (event instanceof CaptureStep step) {
            checkCapture(step);
        } else if (event instanceof RequestAdmitted admitted) {
            liveRequests.add(admitted.requestId()); // a second admission of a live id resumes it
        } else if (event instanceof RequestFinished finished) {
            if (!liveRequests.remove(finished.requestId())) {
                return notLive(finished.requestId(), "finished");
            }
        } else if (event instanceof RequestAborted aborted) {
            if (!liveRequests.remove(aborted.requestId())) {
                return notLive(aborted.requestId(), "aborted");
            }
        } else if (event instanceof RoundCleared) {
            liveRequests.clear();
        } else if (event instanceof RequestFault) {
            throw new InvalidEventException("RequestFault is an output of the pipeline, never an engine event");
        } else if (event == null) {
            throw new NullPointerException("event must not be null");
        }
        return null;
    }

    private static String notLive(String requestId, String what) {
        return "request id '" + requestId + "' " + what + " but not live: never admitted, or already finished or aborted "
                + "(admit it again to record it again)";
    }

    private void checkCapture(CaptureStep step) {
        RoutingShape shape = spec.shape();
        int tokens = step.tokenCount();
        if (tokens < 0) {
            throw new InvalidEventException("tokenCount must not be negative, was " + tokens);
        }
        if (tokens > spec.maxTokensPerStep()) {
            throw new InvalidEventException("tokenCount=" + tokens + " exceeds the ring slot capacity maxTokensPerStep="
                    + spec.maxTokensPerStep());
        }
        if (step.routing().layers() != shape.moeLayers()) {
            throw new InvalidEventException("routing.layers=" + step.routing().layers() + " does not match the pipeline's moeLayers="
                    + shape.moeLayers());
        }
        if (step.routing().topK() != shape.topK()) {
            throw new InvalidEventException("routing.topK=" + step.routing().topK() + " does not match the pipeline's topK="
                    + shape.topK());
        }
        if (step.routing().capacityTokens() < tokens) {
            throw new InvalidEventException("routing buffer holds " + step.routing().capacityTokens() + " tokens, tokenCount="
                    + tokens);
        }
        long now = step.routing().generation();
        if (step.generation() != now) {
            throw new InvalidEventException("routing buffer generation is " + now + " but the step carries generation "
                    + step.generation() + ": the engine overwrote its routing buffer before the pipeline received this step. "
                    + "An operator between the engine and the pipeline (publishOn, cache, buffer, ...) delays events; the "
                    + "pipeline must receive each step inside the engine's own onNext");
        }
        if (step.slotMapping().capacityTokens() < tokens) {
            throw new InvalidEventException("slotMapping buffer holds " + step.slotMapping().capacityTokens()
                    + " tokens, tokenCount=" + tokens);
        }
    }
}
