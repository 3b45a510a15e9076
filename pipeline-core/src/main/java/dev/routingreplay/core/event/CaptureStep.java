package dev.routingreplay.core.event;

/**
 * A forward pass whose routing must be captured: the first {@code tokenCount} tokens of {@code routing}, each
 * stored at the KV-cache slot that {@code slotMapping} gives for it.
 *
 * <p>The pipeline enqueues the copy out of {@code routing} inside the {@code onNext} that delivers this event, on
 * the caller's thread, so the engine may launch its next forward pass as soon as {@code onNext} returns.
 *
 * @param stepId engine step id, used in error messages and acknowledgements
 * @param tokenCount tokens in this step (0 is allowed and captures nothing)
 * @param routing device buffer of ids {@code [tokens, layers, topK]}
 * @param slotMapping device buffer of slots, one per token
 */
public record CaptureStep(long stepId, int tokenCount, RoutingBuffer routing, SlotMappingBuffer slotMapping)
        implements EngineEvent {

    /** Checks for nulls; range checks against the pipeline's shape happen in the pipeline. */
    public CaptureStep {
        if (routing == null || slotMapping == null) {
            throw new IllegalArgumentException("step " + stepId + ": routing and slotMapping must not be null");
        }
    }

    @Override
    public String describe() {
        return "step " + stepId;
    }
}
