package dev.routingreplay.core.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.SlotsMoved;

/**
 * Where captured routing goes: a store of rows keyed by KV-cache slot, and the finished requests' routing.
 *
 * <p>Contract: the pipeline calls these methods from one thread at a time (its sink thread, which may block), in
 * the engine's event order. When a method returns, its effect is acknowledged: the pipeline then reuses the ring
 * slot and emits the event downstream. A method that throws terminates the pipeline with that error; it must not
 * have applied part of the event in a way that corrupts other requests' data.
 */
public interface RoutingSink {
    /** Shape of the rows this sink stores; the pipeline refuses to start when its own shape differs. */
    RoutingShape shape();

    /** Slots {@code [0, slotCapacity)} this sink can hold. */
    int slotCapacity();

    /**
     * Stores each row of {@code step} whose slot is not {@code -1} at its slot, replacing what was there.
     *
     * @return the number of rows stored
     */
    int scatter(CapturedStep step);

    /**
     * A request became live (or resumed), with its cached prefix; no data moves. The sink records the admission so
     * that the request's finish vouches only for rows written after it, or inside the prefix ({@link SlotStore#admit}).
     */
    void admit(RequestAdmitted request);

    /**
     * Gathers the rows of {@code request.slots()} in token order into one record for trainers: each position is a row
     * the sink vouches for, or a missing row with its {@link MissingReason} (never written, stale, written before the
     * admission, invalid, or a bad slot); a row it cannot vouch for never fails the finish and is never returned as
     * data. A second finish of an id in one round (after a new admission) is a new record.
     */
    void finish(RequestFinished request);

    /** The request ends without a record. */
    void abort(RequestAborted request);

    /**
     * Copies the row of each source slot, with its write stamp, to its destination slot (all sources read first); a
     * pair with a slot out of range is not applied (its destination, when in range, no longer holds a row).
     */
    void move(SlotsMoved move);

    /** Ends the round: every row written so far is stale (a later gather reports it missing) and no request stays admitted. */
    void clear(RoundCleared clear);

    /** Called once when the event stream completes normally; make everything acknowledged durable. */
    default void flush() {
    }
}
