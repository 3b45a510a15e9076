package dev.routingreplay.core.host;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.RoutingDtype;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.RingSlotLayout;
import dev.routingreplay.core.device.RingSpec;
import java.nio.ByteBuffer;

/**
 * The pack, on the CPU: engine routing ({@code int32}/{@code int64}, {@code [tokens, layers, topK]}) and slot
 * mapping into one ring slot's staging layout, validating as it goes. This is the reference the CUDA pack kernel
 * is tested against, so the two must agree byte for byte:
 * <ul>
 *   <li>slots are written as int32; a slot outside {@code [-1, slotCapacity)} is counted, one is recorded, and -1
 *       is written in its place;</li>
 *   <li>rows of padding tokens (slot -1, or an invalid slot) are filled with zeros and not checked;</li>
 *   <li>an id outside {@code [0, numExperts)} is counted, one is recorded (the first, here), 0 is written in its
 *       place, and its token's slot word gets {@link RingSlotLayout#DROPPED_ROW}: the whole row is dropped, and a sink
 *       records the slot as missing instead of storing the row. No id value means "missing".</li>
 * </ul>
 */
public final class HostPack {
    private HostPack() {
    }

    /**
     * Packs {@code tokens} tokens into {@code staging}, writing the status header, the slots and the rows.
     *
     * @param routing engine ids, native order, starting at index 0
     * @param routingType element type of {@code routing}
     * @param slots engine slot mapping, native order, starting at index 0
     * @param slotType element type of {@code slots}
     */
    public static void pack(ByteBuffer routing, ElementType routingType, ByteBuffer slots, ElementType slotType,
            int tokens, RingSpec spec, ByteBuffer staging) {
        pack(routing, routingType, slots, slotType, tokens, spec, spec.layout(), staging);
    }

    /**
     * As {@link #pack(ByteBuffer, ElementType, ByteBuffer, ElementType, int, RingSpec, ByteBuffer)} with {@code layout}, the
     * spec's layout made once by the caller (this overload allocates nothing).
     */
    public static void pack(ByteBuffer routing, ElementType routingType, ByteBuffer slots, ElementType slotType,
            int tokens, RingSpec spec, RingSlotLayout layout, ByteBuffer staging) {
        RoutingShape shape = spec.shape();
        RoutingDtype dtype = shape.dtype();
        int idsPerRow = shape.idsPerRow();
        int idBytes = dtype.bytes();
        int numExperts = shape.numExperts();
        int slotCapacity = spec.slotCapacity();
        int badIds = 0;
        int badSlots = 0;
        for (int i = 0; i < RingSlotLayout.STATUS_BYTES; i += 8) {
            staging.putLong(i, 0L);
        }
        for (int t = 0; t < tokens; t++) {
            long slot = slotType == ElementType.INT32 ? slots.getInt(t * 4) : slots.getLong(t * 8);
            if (slot < -1 || slot >= slotCapacity) {
                if (badSlots++ == 0) {
                    staging.putInt(RingSlotLayout.INVALID_SLOT_TOKEN, t);
                    staging.putLong(RingSlotLayout.INVALID_SLOT_VALUE, slot);
                }
                slot = -1;
            }
            staging.putInt(layout.slotOffset(t), (int) slot);
            int rowOffset = layout.rowOffset(t);
            if (slot == -1) {
                for (int j = 0; j < idsPerRow; j++) {
                    dtype.write(staging, rowOffset + j * idBytes, 0);
                }
                continue;
            }
            int srcBase = t * idsPerRow;
            boolean dropped = false;
            for (int j = 0; j < idsPerRow; j++) {
                long id = routingType == ElementType.INT32 ? routing.getInt((srcBase + j) * 4) : routing.getLong((srcBase + j) * 8);
                if (id < 0 || id >= numExperts) {
                    if (badIds++ == 0) {
                        staging.putInt(RingSlotLayout.INVALID_ID_TOKEN, t);
                        staging.putInt(RingSlotLayout.INVALID_ID_INDEX, j);
                        staging.putLong(RingSlotLayout.INVALID_ID_VALUE, id);
                    }
                    id = 0;
                    dropped = true;
                }
                dtype.write(staging, rowOffset + j * idBytes, (int) id);
            }
            if (dropped) {
                staging.putInt(layout.slotOffset(t), (int) slot | RingSlotLayout.DROPPED_ROW);
            }
        }
        staging.putInt(RingSlotLayout.INVALID_ID_COUNT, badIds);
        staging.putInt(RingSlotLayout.INVALID_SLOT_COUNT, badSlots);
    }
}
