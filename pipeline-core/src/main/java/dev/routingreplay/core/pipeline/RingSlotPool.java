package dev.routingreplay.core.pipeline;

import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.device.StagingRing;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * Ownership of the staging ring's slots, as a Disruptor keeps it: one acquire sequence, advanced only by the engine
 * thread, and one release sequence, advanced only by the sink thread. Slot {@code n % depth} is the n-th acquired;
 * the sink releases slots in the same order, because it flushes captures in engine order. Free slots are
 * {@code depth - (acquired - released)}: one source of truth, no lock, no allocation.
 */
final class RingSlotPool {
    private static final VarHandle ACQUIRED;
    private static final VarHandle RELEASED;

    static {
        try {
            MethodHandles.Lookup lookup = MethodHandles.lookup();
            ACQUIRED = lookup.findVarHandle(RingSlotPool.class, "acquired", long.class);
            RELEASED = lookup.findVarHandle(RingSlotPool.class, "released", long.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private final RingSlot[] slots;
    /** Slots acquired so far; written by the engine thread only. */
    private volatile long acquired;
    /** Slots released so far; written by the sink thread only. */
    private volatile long released;

    RingSlotPool(RingSpec spec, StagingRing ring, SinkWaker waker) {
        this.slots = new RingSlot[spec.depth()];
        for (int i = 0; i < slots.length; i++) {
            slots[i] = new RingSlot(i, CapturedStep.over(spec, ring.hostSlot(i)), waker);
        }
    }

    /** Free slots now; any thread. A concurrent acquire can only make it smaller, a concurrent release larger. */
    int free() {
        return slots.length - (int) (acquired - released);
    }

    /** Slots acquired and not yet released; any thread. */
    int inUse() {
        return (int) (acquired - released);
    }

    /**
     * Engine thread: takes the next slot.
     *
     * @throws IllegalStateException when every slot is in use (the caller requested more events than free slots)
     */
    RingSlot acquire() {
        long a = acquired;
        if (a - released >= slots.length) {
            throw new IllegalStateException("every ring slot is in use; demand accounting is broken");
        }
        RingSlot slot = slots[(int) (a % slots.length)];
        ACQUIRED.setRelease(this, a + 1);
        return slot;
    }

    /**
     * Sink thread: releases {@code slot}, which must be the oldest slot in use.
     *
     * @throws IllegalStateException when it is not (captures would have been flushed out of order)
     */
    void release(RingSlot slot) {
        long r = released;
        if (r == acquired || slots[(int) (r % slots.length)] != slot) {
            throw new IllegalStateException("ring slot " + slot.index + " released out of order (next to release: "
                    + (r == acquired ? "none" : r % slots.length) + ")");
        }
        RELEASED.setRelease(this, r + 1);
    }

    /** As the run ends (sink thread gone): releases every slot still in use; returns how many there were. */
    int releaseAll() {
        int n = inUse();
        RELEASED.setRelease(this, acquired);
        return n;
    }
}
