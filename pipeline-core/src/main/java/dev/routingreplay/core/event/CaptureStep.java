package dev.routingreplay.core.event;

/**
 * A forward pass whose routing must be captured: the first {@code tokenCount} tokens of {@code routing}, each
 * stored at the KV-cache slot that {@code slotMapping} gives for it.
 *
 * <p>The pipeline enqueues the copy out of {@code routing} inside the {@code onNext} that delivers this event, on
 * the caller's thread, so the engine may launch its next forward pass as soon as {@code onNext} returns. If the
 * event reaches the pipeline after the engine began overwriting the buffer (its {@code generation} is older than
 * {@link RoutingBuffer#generation()}), the pipeline fails naming the cause instead of capturing the wrong data.
 *
 * @param stepId engine step id, used in error messages and acknowledgements
 * @param tokenCount tokens in this step (0 is allowed and captures nothing)
 * @param routing device buffer of ids {@code [tokens, layers, topK]}
 * @param slotMapping device buffer of slots, one per token
 * @param generation the routing buffer's generation that this step's forward pass wrote
 */
public record CaptureStep(long stepId, int tokenCount, RoutingBuffer routing, SlotMappingBuffer slotMapping, long generation)
        implements EngineEvent {

    /** Checks for nulls; range checks against the pipeline's shape happen in the pipeline. */
    public CaptureStep {
        if (routing == null || slotMapping == null) {
            throw new IllegalArgumentException("step " + stepId + ": routing and slotMapping must not be null");
        }
    }

    /**
     * A step over the data now in {@code routing}: its generation is the buffer's current one. Build it after the
     * forward pass wrote the buffer and before the next {@link RoutingBuffer#beginOverwrite()}.
     */
    public CaptureStep(long stepId, int tokenCount, RoutingBuffer routing, SlotMappingBuffer slotMapping) {
        this(stepId, tokenCount, routing, slotMapping, routing == null ? 0 : routing.generation()); // null: refused above
    }

    @Override
    public String describe() {
        return "step " + stepId;
    }
}
