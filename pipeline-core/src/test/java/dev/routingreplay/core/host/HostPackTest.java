package dev.routingreplay.core.host;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.device.RingSlotLayout;
import dev.routingreplay.core.device.RingSpec;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class HostPackTest {

    @ParameterizedTest(name = "{0} experts, ids {1}, slots {2}")
    @CsvSource({"8, INT32, INT32", "255, INT64, INT64", "256, INT64, INT32", "257, INT32, INT32", "70000, INT32, INT64"})
    void packsEveryDtypeAndZeroesPaddingRows(int experts, ElementType idType, ElementType slotType) {
        RoutingShape shape = new RoutingShape(2, 2, experts);
        RingSpec spec = new RingSpec(shape, 1, 4, 100);
        ByteBuffer routing = ByteBuffer.allocate(4 * 4 * 8).order(ByteOrder.nativeOrder());
        ByteBuffer slots = ByteBuffer.allocate(4 * 8).order(ByteOrder.nativeOrder());
        long[] slotValues = {7, -1, 99, 0};
        for (int t = 0; t < 4; t++) {
            put(slots, slotType, t, slotValues[t]);
            for (int j = 0; j < 4; j++) {
                put(routing, idType, t * 4 + j, (experts - 1 - t - j + experts) % experts);
            }
        }
        ByteBuffer staging = ByteBuffer.allocate(spec.layout().totalBytes()).order(ByteOrder.nativeOrder());
        // poison, so a byte the pack forgets is caught
        for (int i = 0; i < staging.capacity(); i++) {
            staging.put(i, (byte) 0x5A);
        }
        HostPack.pack(routing, idType, slots, slotType, 4, spec, staging);
        CapturedStep.Owner owner = CapturedStep.over(spec, staging);
        owner.aim(1, 4);
        CapturedStep view = owner.view();
        view.checkValid();
        for (int t = 0; t < 4; t++) {
            assertEquals(slotValues[t], view.slot(t));
            for (int l = 0; l < 2; l++) {
                for (int k = 0; k < 2; k++) {
                    int expected = slotValues[t] == -1 ? 0 : (experts - 1 - t - (l * 2 + k) + experts) % experts;
                    assertEquals(expected, view.id(t, l, k), "token " + t + " layer " + l + " k " + k);
                }
            }
        }
        assertEquals(0, staging.getInt(RingSlotLayout.INVALID_ID_COUNT));
    }

    @ParameterizedTest(name = "ids {0}")
    @CsvSource({"INT32", "INT64"})
    void countsAndRecordsTheFirstInvalidIdAndSlot(ElementType type) {
        RoutingShape shape = new RoutingShape(1, 2, 16);
        RingSpec spec = new RingSpec(shape, 1, 4, 10);
        ByteBuffer routing = ByteBuffer.allocate(4 * 2 * 8).order(ByteOrder.nativeOrder());
        ByteBuffer slots = ByteBuffer.allocate(4 * 8).order(ByteOrder.nativeOrder());
        long[] ids = {1, 2, 16, 3, -4, 5, 99, 99};
        long[] slotValues = {0, 1, 2, 10};
        for (int i = 0; i < ids.length; i++) {
            put(routing, type, i, ids[i]);
        }
        for (int t = 0; t < 4; t++) {
            put(slots, type, t, slotValues[t]);
        }
        ByteBuffer staging = ByteBuffer.allocate(spec.layout().totalBytes()).order(ByteOrder.nativeOrder());
        HostPack.pack(routing, type, slots, type, 4, spec, staging);
        // token 3's slot is invalid, so it is padding and its ids (99) are not checked
        assertEquals(2, staging.getInt(RingSlotLayout.INVALID_ID_COUNT));
        assertEquals(1, staging.getInt(RingSlotLayout.INVALID_ID_TOKEN));
        assertEquals(0, staging.getInt(RingSlotLayout.INVALID_ID_INDEX));
        assertEquals(16, staging.getLong(RingSlotLayout.INVALID_ID_VALUE));
        assertEquals(1, staging.getInt(RingSlotLayout.INVALID_SLOT_COUNT));
        assertEquals(3, staging.getInt(RingSlotLayout.INVALID_SLOT_TOKEN));
        assertEquals(10, staging.getLong(RingSlotLayout.INVALID_SLOT_VALUE));
        CapturedStep.Owner owner = CapturedStep.over(spec, staging);
        owner.aim(1, 4);
        CapturedStep view = owner.view();
        assertEquals(0, view.id(1, 0, 0), "an invalid id is replaced by 0 (no id value means missing)");
        assertEquals(0, view.id(2, 0, 0));
        assertEquals(5, view.id(2, 0, 1));
        assertEquals(0, view.slot(0), "a row of valid ids keeps its slot");
        assertEquals(1 | RingSlotLayout.DROPPED_ROW, view.slot(1), "a row with an invalid id is dropped, whole");
        assertTrue(RingSlotLayout.isDropped(view.slot(2)));
        assertEquals(2, RingSlotLayout.droppedSlot(view.slot(2)));
        assertEquals(-1, view.slot(3), "an invalid slot becomes padding");
    }

    private static void put(ByteBuffer b, ElementType type, int index, long value) {
        if (type == ElementType.INT32) {
            b.putInt(index * 4, (int) value);
        } else {
            b.putLong(index * 8, value);
        }
    }
}
