package dev.routingreplay.core.event;

import java.util.Arrays;

/**
 * KV blocks moved (swap to a host tier and back, defragmentation): the routing at {@code sourceSlots[i]} now
 * belongs to {@code destinationSlots[i]}. All sources are read before any destination is written, so overlapping
 * moves and exchanges are safe. Slot ids of every tier share one id space below the pipeline's slot capacity.
 *
 * @param sourceSlots slots the rows come from
 * @param destinationSlots slots the rows go to, same length
 */
public record SlotsMoved(int[] sourceSlots, int[] destinationSlots) implements EngineEvent {

    /**
     * Checks that both arrays are present and of equal length, and copies them, so the engine may reuse its arrays
     * once the event is emitted (the pipeline reads them later, on its sink thread).
     */
    public SlotsMoved {
        if (sourceSlots == null || destinationSlots == null) {
            throw new IllegalArgumentException("sourceSlots and destinationSlots must not be null");
        }
        if (sourceSlots.length != destinationSlots.length) {
            throw new IllegalArgumentException("sourceSlots has " + sourceSlots.length + " entries but destinationSlots has "
                    + destinationSlots.length);
        }
        sourceSlots = sourceSlots.clone();
        destinationSlots = destinationSlots.clone();
    }

    @Override
    public String describe() {
        return "move of " + sourceSlots.length + " slots";
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof SlotsMoved m && Arrays.equals(m.sourceSlots, sourceSlots)
                && Arrays.equals(m.destinationSlots, destinationSlots);
    }

    @Override
    public int hashCode() {
        return Arrays.hashCode(sourceSlots) * 31 + Arrays.hashCode(destinationSlots);
    }

    @Override
    public String toString() {
        return "SlotsMoved[" + sourceSlots.length + " slots]";
    }
}
