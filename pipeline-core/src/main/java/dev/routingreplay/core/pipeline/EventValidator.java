package dev.routingreplay.core.pipeline;

import dev.routingreplay.core.InvalidEventException;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.SlotsMoved;
import java.util.HashSet;
import java.util.Set;

/**
 * Checks each engine event against the run's ring spec and the live request ids before any of its effects is
 * applied, on the engine thread. The ids and ranges of a capture's rows are checked later, by the pack on the device.
 * Every failure is an {@link InvalidEventException} naming the field and the value.
 */
final class EventValidator {
    private final RingSpec spec;
    /** Engine thread only. */
    private final Set<String> liveRequests = new HashSet<>();

    EventValidator(RingSpec spec) {
        this.spec = spec;
    }

    /** Checks {@code event} and, for a lifecycle event, updates the live request ids; allocates nothing for a capture. */
    void check(EngineEvent event) {
        if (event instanceof CaptureStep step) {
            checkCapture(step);
        } else if (event instanceof RequestAdmitted admitted) {
            if (!liveRequests.add(admitted.requestId())) {
                throw new InvalidEventException("duplicate request id '" + admitted.requestId() + "': it is already live");
            }
        } else if (event instanceof RequestFinished finished) {
            requireLive(finished.requestId());
            int[] s = finished.slots();
            for (int i = 0; i < s.length; i++) {
                checkSlot(s[i], "slots[" + i + "]");
            }
            liveRequests.remove(finished.requestId());
        } else if (event instanceof RequestAborted aborted) {
            requireLive(aborted.requestId());
            liveRequests.remove(aborted.requestId());
        } else if (event instanceof SlotsMoved moved) {
            for (int i = 0; i < moved.sourceSlots().length; i++) {
                checkSlot(moved.sourceSlots()[i], "sourceSlots[" + i + "]");
                checkSlot(moved.destinationSlots()[i], "destinationSlots[" + i + "]");
            }
        } else if (event instanceof RoundCleared) {
            liveRequests.clear();
        } else if (event == null) {
            throw new NullPointerException("event must not be null");
        }
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

    private void requireLive(String requestId) {
        if (!liveRequests.contains(requestId)) {
            throw new InvalidEventException("unknown request id '" + requestId
                    + "': not admitted, or already finished or aborted");
        }
    }

    private void checkSlot(int slot, String field) {
        if (slot < 0 || slot >= spec.slotCapacity()) {
            throw new InvalidEventException(field + " = " + slot + " is out of range [0, " + spec.slotCapacity() + ")");
        }
    }
}
