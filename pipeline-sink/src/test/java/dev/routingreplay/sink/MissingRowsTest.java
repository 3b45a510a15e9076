package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.RoutingDtype;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.host.HostPack;
import dev.routingreplay.core.sink.RequestRouting;
import java.io.RandomAccessFile;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.zip.CRC32C;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Record version 4 end to end, with a 256-expert shape stored as uint8: the host pack drops a row with an out-of-range
 * id, the Chronicle sink records its slot missing (also after journal recovery), the request record carries the
 * missing-row bitmap under its checksum, expert 255 round-trips, and the server serves a missing row as -1 in int16,
 * int32 and int64 and refuses it in the native dtype.
 */
@Timeout(120)
class MissingRowsTest {
    private static final RoutingShape SHAPE = new RoutingShape(3, 2, 256);
    private static final int SLOTS = 256;

    @TempDir
    Path dir;

    /** Row of token {@code t}: ids 255, 254, ... so that 255 (the old sentinel) is in every row. */
    private static int id(int t, int j) {
        return (255 - t - j * 40 + 256 * 4) % 256;
    }

    /** Packs a step of tokens on {@code slots} with the host pack; token {@code bad} gets expert id 256 in its last id. */
    private static CapturedStep step(long stepId, int[] slots, int bad) {
        int n = slots.length;
        int per = SHAPE.idsPerRow();
        RingSpec spec = new RingSpec(SHAPE, 1, n, SLOTS);
        ByteBuffer ids = ByteBuffer.allocateDirect(n * per * 4).order(ByteOrder.nativeOrder());
        ByteBuffer slotMapping = ByteBuffer.allocateDirect(n * 4).order(ByteOrder.nativeOrder());
        for (int t = 0; t < n; t++) {
            slotMapping.putInt(t * 4, slots[t]);
            for (int j = 0; j < per; j++) {
                ids.putInt((t * per + j) * 4, t == bad && j == per - 1 ? 256 : id(t, j));
            }
        }
        ByteBuffer staging = ByteBuffer.allocateDirect(spec.layout().totalBytes()).order(ByteOrder.nativeOrder());
        HostPack.pack(ids, ElementType.INT32, slotMapping, ElementType.INT32, n, spec, staging);
        CapturedStep.Owner owner = CapturedStep.over(spec, staging);
        owner.aim(stepId, n);
        return owner.view();
    }

    private static int[] range(int first, int n) {
        int[] out = new int[n];
        for (int i = 0; i < n; i++) {
            out[i] = first + i;
        }
        return out;
    }

    private static int[] expected(int n, int missing) {
        int[] out = new int[n * SHAPE.idsPerRow()];
        for (int t = 0; t < n; t++) {
            for (int j = 0; j < SHAPE.idsPerRow(); j++) {
                out[t * SHAPE.idsPerRow() + j] = t == missing ? -1 : id(t, j);
            }
        }
        return out;
    }

    /** Writes "whole" (70 tokens, slots 0..69) and "gap" (70 tokens, slots 100..169, token 66 dropped). */
    private StoreConfig write() {
        StoreConfig config = StoreConfig.of(dir, SHAPE, SLOTS).withMinFreeBytes(0);
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config)) {
            assertEquals(70, sink.scatter(step(1, range(0, 70), -1)));
            assertEquals(69, sink.scatter(step(2, range(100, 70), 66)), "the dropped row is not stored");
            sink.finish(new RequestFinished("whole", range(0, 70)));
            sink.finish(new RequestFinished("gap", range(100, 70)));
        }
        return config;
    }

    @Test
    void aRowWithAnOutOfRangeIdIsStoredAsMissingAndExpert255RoundTrips() {
        StoreConfig config = write();
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            assertEquals(RoutingDtype.UINT8, replay.manifest().dtype());
            List<RequestRouting> all = replay.requests().collectList().block();
            RequestRouting whole = all.get(0);
            assertEquals(RoutingDtype.UINT8, whole.dtype());
            assertEquals(70 * SHAPE.idsPerRow(), whole.rows().remaining(), "one byte per id");
            assertEquals(0, whole.missingRowCount());
            assertEquals(255, whole.id(0, 0, 0), "expert 255 is an id, not a sentinel");
            assertArrayEquals(expected(70, -1), whole.toIntArray());
            RequestRouting gap = all.get(1);
            assertEquals(1, gap.missingRowCount());
            assertTrue(gap.isMissing(66));
            assertArrayEquals(expected(70, 66), gap.toIntArray());
        }
        // the journal replays the dropped row as missing: a request over the slot after a reopen still has it missing
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config)) {
            sink.finish(new RequestFinished("again", new int[] {165, 166, 167}));
            sink.finish(new RequestFinished("prefix", new int[] {100, 101}));
        }
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            List<RequestRouting> all = replay.requests().collectList().block();
            assertEquals(1, all.get(2).missingRowCount());
            assertTrue(all.get(2).isMissing(1));
            assertEquals(0, all.get(3).missingRowCount());
        }
    }

    @Test
    void theServerGivesMinusOneInSignedDtypesAnd409InNative() throws Exception {
        write();
        try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0)) {
            String manifest = TrainerStores.text(server, "/manifest", null).body();
            assertTrue(manifest.contains("\"numExperts\":256,\"dtype\":\"uint8\",\"storeFormat\":3,\"missingAs\":-1,"
                    + "\"missingDtypes\":[\"int16\",\"int32\",\"int64\"]"), manifest);
            String listing = TrainerStores.text(server, "/requests", null).body();
            assertTrue(listing.contains("\"requestId\":\"whole\",\"round\":0,\"seqLen\":70,\"missingRows\":0,\"missingReasons\":{}}"), listing);
            assertTrue(listing.contains("\"requestId\":\"gap\",\"round\":0,\"seqLen\":70,\"missingRows\":1,\"missingReasons\":{\"invalid-id\":1}}"),
                    listing);
            TrainerStores.Npy whole = TrainerStores.get(server, "/requests/0.npy", null);
            assertEquals(200, whole.status(), whole.text());
            assertEquals("|u1", whole.descr());
            assertEquals(255, whole.at(0));
            CRC32C crc = new CRC32C();
            crc.update(whole.data());
            assertEquals(crc.getValue(), Long.parseLong(whole.header("x-r3-crc32c"), 16));
            HttpResponse<String> refused = TrainerStores.text(server, "/requests/by-id/gap.npy?drop_last=true", null);
            assertEquals(409, refused.statusCode(), refused.body());
            assertEquals("dtype=native (uint8) cannot carry the 1 missing row of positions 0..69 of request 'gap' (rows the rollout "
                    + "did not record); ask dtype=int16, int32, int64, where every id of a missing row is -1", refused.body().strip());
            assertEquals(200, TrainerStores.get(server, "/requests/1.npy?start=67", null).status(), "a native slice past the missing row");
            int[] expected = expected(70, 66);
            for (String dtype : List.of("int16", "int32", "int64")) {
                TrainerStores.Npy gap = TrainerStores.get(server, "/requests/1.npy?dtype=" + dtype + "&start=60", null);
                assertEquals(200, gap.status(), gap.text());
                for (int i = 0; i < 10 * SHAPE.idsPerRow(); i++) {
                    assertEquals(expected[60 * SHAPE.idsPerRow() + i], gap.at(i), dtype + " element " + i);
                }
                assertEquals("1", gap.header("x-r3-missing-rows"));
                TrainerStores.Npy layer = TrainerStores.get(server, "/requests/1.npy?dtype=" + dtype + "&start=66&layers=2:3", null);
                assertEquals(-1, layer.at(0));
                assertEquals(-1, layer.at(1));
                assertEquals(id(67, 4), layer.at(2));
            }
        }
    }

    @Test
    void theRecordChecksumCoversTheMissingRowBitmap() throws Exception {
        write();
        Path file;
        try (var files = Files.list(dir.resolve("requests"))) {
            file = files.filter(f -> f.toString().endsWith(".cq4")).findFirst().orElseThrow();
        }
        byte[] all = Files.readAllBytes(file);
        byte[] start = {0x52, 0x33, 0x52, 0x51, RecordFormat.REQUEST_VERSION, 3, 0, 0, 0, 'g', 'a', 'p'};
        int at = -1;
        for (int i = 0; i + start.length <= all.length && at < 0; i++) {
            if (java.util.Arrays.equals(all, i, i + start.length, start, 0, start.length)) {
                at = i;
            }
        }
        assertTrue(at > 0, "the record of 'gap'");
        int bitmap = at + start.length + 8 + 8 + 4 * 4 + 1 + 4;
        ByteBuffer b = ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(1, b.getInt(bitmap - 4), "the missing-row count");
        assertEquals(1L << 2, b.getLong(bitmap + 8), "row 66: bit 2 of the second word");
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.seek(bitmap + 8);
            f.write(0); // the missing row 66 would read as a recorded row of zeros
        }
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            StoreException e = assertThrows(StoreException.class, () -> replay.requests().collectList().block());
            assertTrue(e.getMessage().contains("checksum"), e.getMessage());
        }
        try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0)) {
            HttpResponse<String> res = TrainerStores.text(server, "/requests/1.npy?dtype=int64", null);
            assertEquals(500, res.statusCode(), res.body());
            assertTrue(res.body().contains("checksum"), res.body());
            assertFalse(res.body().contains(dir.toString()), "never the store's path");
            assertEquals(200, TrainerStores.get(server, "/requests/0.npy", null).status(), "the other record is served");
        }
    }
}
