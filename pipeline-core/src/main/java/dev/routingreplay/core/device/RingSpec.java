package dev.routingreplay.core.device;

import dev.routingreplay.core.RoutingShape;

/**
 * What a staging ring is sized for.
 *
 * @param shape routing shape of every row
 * @param depth number of ring slots (steps that can be in flight between capture and sink); at least 1
 * @param maxTokensPerStep tokens one ring slot holds; a step with more tokens is rejected
 * @param slotCapacity KV-cache slots are valid in {@code [0, slotCapacity)}; {@code -1} marks padding
 */
public record RingSpec(RoutingShape shape, int depth, int maxTokensPerStep, int slotCapacity) {
    /** Validates each field, naming the bad one. */
    public RingSpec {
        if (shape == null) {
            throw new IllegalArgumentException("shape must not be null");
        }
        if (depth < 1 || depth > 1024) {
            throw new IllegalArgumentException("ringDepth must be in [1, 1024], was " + depth);
        }
        if (maxTokensPerStep < 1) {
            throw new IllegalArgumentException("maxTokensPerStep must be positive, was " + maxTokensPerStep);
        }
        if (slotCapacity < 1) {
            throw new IllegalArgumentException("slotCapacity must be positive, was " + slotCapacity);
        }
        if (RingSlotLayout.bytesFor(shape, maxTokensPerStep) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("maxTokensPerStep=" + maxTokensPerStep + " of " + shape.describe()
                    + " needs more than 2 GiB per ring slot");
        }
    }

    /** The byte layout of one ring slot for this spec. */
    public RingSlotLayout layout() {
        return new RingSlotLayout(shape, maxTokensPerStep);
    }
}
