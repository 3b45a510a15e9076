package dev.routingreplay.core.sink;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.RoutingDtype;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.host.HostPack;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.SlotsMoved;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Map;
import org.junit.jupiter.api.Test;

class SlotStoreTest {
    private final RoutingShape shape = new RoutingShape(2, 2, 100);

    private static ByteBuffer row(int value) {
        ByteBuffer b = ByteBuffer.allocate(4);
        for (int i = 0; i < 4; i++) {
            b.put(i, (byte) (value + i));
        }
        return b;
    }

    private int[] ids(SlotStore store, int... slots) {
        return store.gather(new RequestFinished("x", slots)).toIntArray();
    }

    @Test
    void anExchangeOfSlotsReadsAllSourcesFirst() {
        try (SlotStore store = new SlotStore(shape, 8)) {
            store.put(1, row(10), 0);
            store.put(2, row(20), 0);
            store.move(new SlotsMoved(new int[] {1, 2}, new int[] {2, 1}));
            assertArrayEquals(new int[] {20, 21, 22, 23, 10, 11, 12, 13}, ids(store, 1, 2));
            store.move(new SlotsMoved(new int[] {1, 5}, new int[] {6, 1}));
            assertNull(store.missingReason(6));
            assertEquals(MissingReason.NEVER_WRITTEN, store.missingReason(1), "moving an unwritten slot unwrites the destination");
            assertArrayEquals(new int[] {20, 21, 22, 23}, ids(store, 6));
        }
    }

    @Test
    void aClearMakesEveryEarlierRowStaleAndAGatherReportsItsPositionsMissingWithTheReason() {
        try (SlotStore store = new SlotStore(shape, 8)) {
            store.put(3, row(1), 0);
            store.put(4, row(2), 0);
            assertEquals(8, store.gather(new RequestFinished("r", new int[] {3, 4})).rows().capacity());
            store.clear();
            store.beginStep();
            store.put(4, row(5), 0);
            RequestRouting r = store.gather(new RequestFinished("x", new int[] {3, 4, 5}));
            assertEquals(MissingReason.STALE_ROUND, r.missingReason(0));
            assertNull(r.missingReason(1));
            assertEquals(MissingReason.NEVER_WRITTEN, r.missingReason(2));
            assertArrayEquals(new int[] {-1, -1, -1, -1, 5, 6, 7, 8, -1, -1, -1, -1}, r.toIntArray());
            assertEquals(Map.of(MissingReason.STALE_ROUND, 1, MissingReason.NEVER_WRITTEN, 1), r.missingReasonCounts());
        }
    }

    @Test
    void anAdmittedRequestVouchesOnlyForRowsWrittenAfterItsAdmissionOrInsideItsCachedPrefix() {
        try (SlotStore store = new SlotStore(shape, 8)) {
            store.beginStep();
            store.put(0, row(10), 0); // an earlier request's rows
            store.put(1, row(20), 0);
            store.put(2, row(30), 0);
            store.admit("late", 1); // position 0 is a prefix-cache hit
            store.beginStep();
            store.put(3, row(40), 0);
            RequestRouting r = store.gather(new RequestFinished("late", new int[] {0, 1, 3}));
            assertNull(r.missingReason(0), "inside the cached prefix: written in this round is enough");
            assertEquals(MissingReason.BEFORE_ADMISSION, r.missingReason(1), "past the prefix, written before the admission");
            assertNull(r.missingReason(2));
            assertFalse(store.isAdmitted("late"), "a gather ends the admission");
            // the same slots gathered without an admission: any row of the round
            assertEquals(0, store.gather(new RequestFinished("late", new int[] {0, 1, 3})).missingRowCount());
            // a second admission replaces the first (a resumed request)
            store.admit("again", 0);
            store.beginStep();
            store.put(1, row(50), 0);
            store.admit("again", 2);
            assertEquals(0, store.gather(new RequestFinished("again", new int[] {0, 1})).missingRowCount());
            store.admit("gone", 0);
            store.forget("gone");
            assertFalse(store.isAdmitted("gone"));
            assertThrows(IllegalArgumentException.class, () -> store.admit("neg", -1));
        }
    }

    @Test
    void aRowAnotherRequestsFinishTookAsItsOwnIsMissingAsReusedSlotUntilWrittenAgain() {
        try (SlotStore store = new SlotStore(shape, 8)) {
            store.admit("a", 0);
            store.admit("b", 0);
            store.beginStep();
            store.put(0, row(10), 0); // a's position 0
            store.put(1, row(20), 0); // b's position 0
            assertEquals(0, store.gather(new RequestFinished("b", new int[] {1})).missingRowCount());
            // slot 1 is freed and handed to a, whose write of position 1 never arrives (a slot mapping entry out of range)
            RequestRouting a = store.gather(new RequestFinished("a", new int[] {0, 1}));
            assertNull(a.missingReason(0));
            assertEquals(MissingReason.REUSED_SLOT, a.missingReason(1), "b's row is not a's");
            // a sibling that declares the slot as its cached prefix reads it; one that writes it again owns it
            store.admit("sibling", 1);
            assertEquals(0, store.gather(new RequestFinished("sibling", new int[] {1})).missingRowCount());
            store.admit("c", 0);
            store.beginStep();
            store.put(1, row(30), 0);
            assertEquals(0, store.gather(new RequestFinished("c", new int[] {1})).missingRowCount());
            assertNull(store.read(1).missingReason(0), "a tool's read vouches for any row of the round");
        }
    }

    @Test
    void slotsSpanSeveralChunks() {
        RoutingShape wide = new RoutingShape(64, 8, 1000);
        int slots = 3 * 64 + 10;
        try (SlotStore store = new SlotStore(wide, slots, 64 * wide.rowBytes())) {
            ByteBuffer r = ByteBuffer.allocate(wide.rowBytes()).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            for (int i = 0; i < wide.idsPerRow(); i++) {
                r.putShort(2 * i, (short) (i % 8 == 0 ? 321 : i % 8)); // distinct within each layer
            }
            ByteBuffer z = ByteBuffer.allocate(wide.rowBytes()).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            for (int i = 0; i < wide.idsPerRow(); i++) {
                z.putShort(2 * i, (short) (i % 8));
            }
            store.put(slots - 1, r, 0);
            store.put(0, z, 0);
            RequestRouting got = store.gather(new RequestFinished("y", new int[] {slots - 1, 0}));
            assertEquals(321, got.id(0, 0, 0));
            assertEquals(0, got.id(1, 0, 0));
        }
    }

    @Test
    void aGatherRunOfConsecutiveSlotsCrossingChunkBoundariesReadsEachRowFromItsOwnChunk() {
        int slots = 12;
        try (SlotStore store = new SlotStore(shape, slots, 4 * shape.rowBytes())) { // chunks of 4 slots
            for (int slot = 0; slot < slots; slot++) {
                store.put(slot, row(10 * slot), 0);
            }
            int[] run = {2, 3, 4, 5, 6, 7, 8, 9, 10};
            int[] got = ids(store, run);
            for (int p = 0; p < run.length; p++) {
                for (int i = 0; i < 4; i++) {
                    assertEquals((10 * run[p] + i) & 0xFF, got[p * 4 + i], "position " + p + " (slot " + run[p] + ") id " + i);
                }
            }
        }
    }

    @Test
    void aClosedStoreRefusesEveryUseWithAnError() {
        SlotStore store = new SlotStore(shape, 8);
        store.put(1, row(1), 0);
        store.close();
        store.close();
        assertEquals("slot store of 8 slots is closed; put refused",
                assertThrows(IllegalStateException.class, () -> store.put(1, row(1), 0)).getMessage());
        assertThrows(IllegalStateException.class, () -> ids(store, 1));
        assertThrows(IllegalStateException.class, () -> store.move(new SlotsMoved(new int[] {1}, new int[] {2})));
        assertThrows(IllegalStateException.class, store::clear);
        assertThrows(IllegalStateException.class, () -> store.missingReason(1));
        assertThrows(IllegalStateException.class, () -> store.admit("a", 0));
    }

    @Test
    void slotsOutOfRangeAreMissingRowsOfTheirPositionAndBadMovePairsAreNotApplied() {
        try (SlotStore store = new SlotStore(shape, 8)) {
            store.put(7, row(70), 0);
            store.put(0, row(1), 0);
            store.put(1, row(9), 0);
            assertEquals("slot = 8 is out of range [0, 8)", assertThrows(IllegalArgumentException.class, () -> store.put(8, row(1), 0)).getMessage());
            RequestRouting r = store.gather(new RequestFinished("x", new int[] {7, 8, -1}));
            assertNull(r.missingReason(0));
            assertEquals(MissingReason.BAD_SLOT, r.missingReason(1));
            assertEquals(MissingReason.BAD_SLOT, r.missingReason(2));
            assertArrayEquals(new int[] {70, 71, 72, 73, -1, -1, -1, -1, -1, -1, -1, -1}, r.toIntArray());
            assertEquals(1, store.move(new SlotsMoved(new int[] {0, 7}, new int[] {2, 8})), "the pair with a bad destination is skipped");
            assertArrayEquals(new int[] {1, 2, 3, 4}, ids(store, 2), "the good pair is applied");
            assertEquals(1, store.move(new SlotsMoved(new int[] {-1}, new int[] {1})));
            assertEquals(MissingReason.NEVER_WRITTEN, store.missingReason(1), "a bad source leaves its destination unknown: unwritten");
            assertEquals(1, store.move(new SlotsMoved(new int[] {8}, new int[] {3})));
            assertEquals(1, store.move(new SlotsMoved(new int[] {0}, new int[] {-1})));
            assertArrayEquals(new int[] {70, 71, 72, 73}, ids(store, 7), "the last slot is in range");
        }
    }

    /** Packs {@code ids} ([tokens, 2 layers, 2 k], int32) for {@code slots} with the host pack, as a ring slot holds them. */
    private static CapturedStep packed(RoutingShape shape, int slotCapacity, int[] slots, int[] ids) {
        RingSpec spec = new RingSpec(shape, 1, slots.length, slotCapacity);
        ByteBuffer routing = ByteBuffer.allocate(ids.length * 4).order(ByteOrder.nativeOrder());
        ByteBuffer slotMapping = ByteBuffer.allocate(slots.length * 4).order(ByteOrder.nativeOrder());
        for (int i = 0; i < ids.length; i++) {
            routing.putInt(i * 4, ids[i]);
        }
        for (int t = 0; t < slots.length; t++) {
            slotMapping.putInt(t * 4, slots[t]);
        }
        ByteBuffer staging = ByteBuffer.allocate(spec.layout().totalBytes()).order(ByteOrder.nativeOrder());
        HostPack.pack(routing, ElementType.INT32, slotMapping, ElementType.INT32, slots.length, spec, staging);
        CapturedStep.Owner owner = CapturedStep.over(spec, staging);
        owner.aim(1, slots.length);
        return owner.view();
    }

    @Test
    void aRowWithAnOutOfRangeIdIsMissingWholeAndExpert255OfAUint8ShapeIsAnId() {
        RoutingShape shape256 = new RoutingShape(2, 2, 256);
        assertEquals(RoutingDtype.UINT8, shape256.dtype());
        try (SlotStore store = new SlotStore(shape256, 8)) {
            // slot 5 held an earlier row: a dropped row must not leave it readable (stale)
            store.scatter(packed(shape256, 8, new int[] {5}, new int[] {1, 2, 3, 4}));
            int stored = store.scatter(packed(shape256, 8, new int[] {3, 5, -1}, new int[] {255, 254, 0, 255, 7, 256, 8, 9, 1, 1, 1, 1}));
            assertEquals(1, stored, "the dropped row and the padding are not stored");
            assertEquals(MissingReason.INVALID_ID, store.missingReason(5));
            assertNull(store.missingReason(3));
            RequestRouting r = store.gather(new RequestFinished("m", new int[] {3, 5}));
            assertEquals(1, r.missingRowCount());
            assertFalse(r.isMissing(0));
            assertTrue(r.isMissing(1));
            assertEquals(MissingReason.INVALID_ID, r.missingReason(1));
            assertArrayEquals(new int[] {255, 254, 0, 255, -1, -1, -1, -1}, r.toIntArray());
            assertEquals(255, r.id(0, 0, 0));
            assertArrayEquals(new long[] {2L}, r.missingRows());
            ByteBuffer rows = r.rows();
            for (int b = 4; b < 8; b++) {
                assertEquals(0, rows.get(b), "a missing row's bytes are zero");
            }
            // a move carries the missing state; a later full row makes the slot whole again
            store.move(new SlotsMoved(new int[] {5}, new int[] {6}));
            assertEquals(MissingReason.INVALID_ID, store.missingReason(6));
            store.scatter(packed(shape256, 8, new int[] {6}, new int[] {4, 3, 2, 1}));
            assertNull(store.missingReason(6));
            assertArrayEquals(new int[] {4, 3, 2, 1}, store.gather(new RequestFinished("w", new int[] {6})).toIntArray());
        }
    }

    @Test
    void aRowNamingOneExpertTwiceInALayerIsMissingAsDuplicateExpertAndOtherLayersMayRepeatIt() {
        try (SlotStore store = new SlotStore(shape, 8)) {
            // [layer 0: 3, 3] is a duplicate; [layer 0: 3, 5 | layer 1: 3, 5] repeats across layers only
            int stored = store.scatter(packed(shape, 8, new int[] {1, 2, 3}, new int[] {3, 3, 5, 7, 3, 5, 3, 5, 0, 1, 1, 0}));
            assertEquals(2, stored);
            assertEquals(MissingReason.DUPLICATE_EXPERT, store.missingReason(1));
            assertNull(store.missingReason(2));
            assertNull(store.missingReason(3));
            RequestRouting r = store.gather(new RequestFinished("d", new int[] {1, 2, 3}));
            assertEquals(Map.of(MissingReason.DUPLICATE_EXPERT, 1), r.missingReasonCounts());
            assertArrayEquals(new int[] {-1, -1, -1, -1, 3, 5, 3, 5, 0, 1, 1, 0}, r.toIntArray());
            assertEquals(1, store.missingRowsGathered(MissingReason.DUPLICATE_EXPERT));
            // the journal's path (put) checks the same
            store.put(4, ByteBuffer.wrap(new byte[] {9, 8, 7, 7}), 0);
            assertEquals(MissingReason.DUPLICATE_EXPERT, store.missingReason(4));
        }
    }

    @Test
    void topEightRowsInUint8AndUint16AreCheckedWordWide() {
        for (RoutingShape top8 : new RoutingShape[] {new RoutingShape(3, 8, 256), new RoutingShape(3, 8, 384)}) {
            try (SlotStore store = new SlotStore(top8, 8)) {
                int[] ids = new int[2 * 24];
                for (int i = 0; i < ids.length; i++) {
                    ids[i] = (i % 8) * 31 + i / 8; // distinct within each layer
                }
                ids[24 + 8 + 7] = ids[24 + 8]; // token 1, layer 1: its first expert again as its last
                assertEquals(1, store.scatter(packed(top8, 8, new int[] {2, 3}, ids)), top8.describe());
                assertNull(store.missingReason(2), top8.describe());
                assertEquals(MissingReason.DUPLICATE_EXPERT, store.missingReason(3), top8.describe());
            }
        }
    }

    @Test
    void theWordWideChecksFindEveryRepeatedPairAndNothingElse() {
        java.util.Random rng = new java.util.Random(7);
        for (int trial = 0; trial < 20_000; trial++) {
            int[] ids = new int[8];
            for (int k = 0; k < 8; k++) {
                ids[k] = rng.nextInt(trial % 2 == 0 ? 12 : 65536);
            }
            if (trial % 3 == 0) {
                ids[rng.nextInt(8)] = ids[rng.nextInt(8)];
            }
            boolean repeated = Arrays.stream(ids).distinct().count() < 8;
            if (trial % 2 == 0) {
                ByteBuffer b = ByteBuffer.allocate(8).order(ByteOrder.nativeOrder());
                for (int k = 0; k < 8; k++) {
                    b.put(k, (byte) ids[k]);
                }
                assertEquals(repeated, DuplicateExperts.eightBytesRepeat(b.getLong(0)), Arrays.toString(ids));
            } else {
                ByteBuffer b = ByteBuffer.allocate(16).order(ByteOrder.nativeOrder());
                for (int k = 0; k < 8; k++) {
                    b.putShort(2 * k, (short) ids[k]);
                }
                assertEquals(repeated, DuplicateExperts.eightShortsRepeat(b.getLong(0), b.getLong(8)), Arrays.toString(ids));
            }
        }
    }

    @Test
    void gatherIntoFillsTheMissingRowBitmapAndReasonsWithoutTouchingLaterWords() {
        try (SlotStore store = new SlotStore(shape, 200)) {
            int[] slots = new int[130];
            for (int p = 0; p < slots.length; p++) {
                slots[p] = p;
                if (p == 0 || p == 64 || p == 129) {
                    store.putMissing(p, MissingReason.INVALID_ID);
                } else {
                    store.put(p, row(p), 0);
                }
            }
            long[] bits = {-1L, -1L, -1L, 42L};
            byte[] reasons = new byte[131];
            Arrays.fill(reasons, (byte) 9);
            ByteBuffer dst = ByteBuffer.allocate(slots.length * shape.rowBytes());
            assertEquals(3, store.gatherInto(new RequestFinished("b", slots), dst, bits, reasons));
            assertArrayEquals(new long[] {1L, 1L, 2L, 42L}, bits);
            assertEquals(MissingReason.INVALID_ID.code(), reasons[64]);
            assertEquals(0, reasons[63]);
            assertEquals(9, reasons[130], "past seqLen untouched");
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> store.gatherInto(new RequestFinished("b", slots), dst, new long[2], reasons));
            assertTrue(e.getMessage().contains("bitmap of 2 words"), e.getMessage());
            e = assertThrows(IllegalArgumentException.class, () -> store.gatherInto(new RequestFinished("b", slots), dst, bits, new byte[3]));
            assertTrue(e.getMessage().contains("reason table of 3 bytes"), e.getMessage());
        }
    }
}
