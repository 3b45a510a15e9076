package dev.routingreplay.core.device;

import dev.routingreplay.core.InvalidEventException;
import dev.routingreplay.core.RoutingShape;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A read-only flyweight over one ring slot's host memory after its copy completed: the step's slots and packed
 * rows. One instance per ring slot, re-aimed for each step by its {@link Owner} (the pipeline), so reading a step
 * allocates nothing. A sink gets only this view: it cannot re-aim it or write the memory. Valid until the pipeline
 * releases the ring slot; sinks must copy what they keep.
 */
public final class CapturedStep {
    private final RoutingShape shape;
    private final RingSlotLayout layout;
    private final int slotCapacity;
    private final ByteBuffer host;
    private long stepId;
    private int tokenCount;

    private CapturedStep(RingSpec spec, ByteBuffer host) {
        this.shape = spec.shape();
        this.layout = spec.layout();
        this.slotCapacity = spec.slotCapacity();
        this.host = host.asReadOnlyBuffer().order(ByteOrder.nativeOrder());
    }

    /**
     * A view over {@code host} (a ring slot's host memory, laid out by {@code spec}'s {@link RingSlotLayout}) and the
     * handle that aims it; whoever creates it owns the aiming, consumers get {@link Owner#view()}.
     */
    public static Owner over(RingSpec spec, ByteBuffer host) {
        return new Owner(new CapturedStep(spec, host));
    }

    /** The handle that re-aims a {@link CapturedStep}; held by the ring slot's owner, never given to sinks. */
    public static final class Owner {
        private final CapturedStep view;

        private Owner(CapturedStep view) {
            this.view = view;
        }

        /** Aims the view at step {@code stepId} of {@code tokenCount} tokens, now in the host memory. */
        public void aim(long stepId, int tokenCount) {
            view.stepId = stepId;
            view.tokenCount = tokenCount;
        }

        /** The read-only view, the same instance for every step. */
        public CapturedStep view() {
            return view;
        }
    }

    /** The engine's step id. */
    public long stepId() {
        return stepId;
    }

    /** Tokens in the step, padding included. */
    public int tokenCount() {
        return tokenCount;
    }

    /** Routing shape of each row. */
    public RoutingShape shape() {
        return shape;
    }

    /**
     * Slot word of token {@code token}: the slot ({@code >= 0}); {@code -1} = padding, skip it; below -1 = the pack
     * dropped the row (an expert id out of range), its slot is {@link RingSlotLayout#droppedSlot} and the row must be
     * recorded as missing, never stored.
     */
    public int slot(int token) {
        return host.getInt(layout.slotOffset(token));
    }

    /** The host memory the rows live in: a read-only buffer in native order; read it with absolute offsets. */
    public ByteBuffer memory() {
        return host;
    }

    /** Offset in {@link #memory()} of the int32 slots, token after token. */
    public int slotsOffset() {
        return RingSlotLayout.SLOTS_OFFSET;
    }

    /** Offset in {@link #memory()} of token {@code token}'s row of {@link RoutingShape#rowBytes()} bytes. */
    public int rowOffset(int token) {
        return layout.rowOffset(token);
    }

    /** Bytes per row. */
    public int rowBytes() {
        return layout.rowBytes();
    }

    /** Id at (token, layer, k), decoded from the compact dtype. */
    public int id(int token, int layer, int k) {
        return shape.dtype().read(host, layout.rowOffset(token) + (layer * shape.topK() + k) * shape.dtype().bytes());
    }

    /** Expert ids outside {@code [0, numExperts)} the pack found in this step (each dropped its token's row). */
    public int invalidIdCount() {
        return host.getInt(RingSlotLayout.INVALID_ID_COUNT);
    }

    /** Slot mapping entries outside {@code [-1, slotCapacity)} the pack found in this step (each dropped its token's row). */
    public int invalidSlotCount() {
        return host.getInt(RingSlotLayout.INVALID_SLOT_COUNT);
    }

    /** The token index of one slot mapping entry out of range (the first the pack saw), or -1 when there is none. */
    public int firstInvalidSlotToken() {
        return invalidSlotCount() == 0 ? -1 : host.getInt(RingSlotLayout.INVALID_SLOT_TOKEN);
    }

    /** That entry's value as the engine wrote it (0 when there is none). */
    public long firstInvalidSlotValue() {
        return invalidSlotCount() == 0 ? 0 : host.getLong(RingSlotLayout.INVALID_SLOT_VALUE);
    }

    /** The token index of one expert id out of range, or -1 when there is none. */
    public int firstInvalidIdToken() {
        return invalidIdCount() == 0 ? -1 : host.getInt(RingSlotLayout.INVALID_ID_TOKEN);
    }

    /**
     * Throws when the pack found an id outside {@code [0, numExperts)} or a slot outside {@code [-1, slotCapacity)}.
     * The message names the token, the field and the value.
     */
    public void checkValid() {
        int badSlots = host.getInt(RingSlotLayout.INVALID_SLOT_COUNT);
        if (badSlots != 0) {
            throw new InvalidEventException("slotMapping[" + host.getInt(RingSlotLayout.INVALID_SLOT_TOKEN)
                    + "] = " + host.getLong(RingSlotLayout.INVALID_SLOT_VALUE) + " is out of range [-1, " + slotCapacity
                    + ") (" + badSlots + " bad slot" + (badSlots == 1 ? "" : "s") + " in the step)");
        }
        int badIds = host.getInt(RingSlotLayout.INVALID_ID_COUNT);
        if (badIds != 0) {
            int index = host.getInt(RingSlotLayout.INVALID_ID_INDEX);
            throw new InvalidEventException("expert id " + host.getLong(RingSlotLayout.INVALID_ID_VALUE)
                    + " at token " + host.getInt(RingSlotLayout.INVALID_ID_TOKEN) + ", layer " + index / shape.topK()
                    + ", k " + index % shape.topK() + " is out of range [0, " + shape.numExperts() + ") (" + badIds
                    + " bad id" + (badIds == 1 ? "" : "s") + " in the step)");
        }
    }
}
