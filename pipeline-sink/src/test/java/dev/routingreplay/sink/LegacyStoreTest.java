package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingDtype;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.sink.RequestRouting;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.zip.CRC32C;
import net.openhft.chronicle.queue.ExcerptAppender;
import net.openhft.chronicle.queue.RollCycles;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueue;
import net.openhft.chronicle.wire.DocumentContext;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * A store written by the build before record version 4 (the committed fixture {@code legacy-v3-256experts}: store
 * format 2, request records version 3, 256 experts as uint16 with the sentinel 65535, written by that build's own
 * writer) stays readable: its rows in their old dtype, a row with the sentinel as a missing row (-1 in every signed
 * dtype, 409 for native), the writer's checksum still sent; a writer of this build refuses to append to it.
 */
@Timeout(120)
class LegacyStoreTest {
    private static final String FIXTURE = "legacy-v3-256experts/";
    private static final RoutingShape SHAPE = new RoutingShape(3, 2, 256);

    @TempDir
    Path dir;

    /** The id the fixture's writer gave request {@code request}, token {@code t}, id {@code j} of the row. */
    private static int id(int request, int t, int j) {
        return (request * 31 + t * 7 + j * 255) % 256;
    }

    /** The ids of request {@code request} of {@code n} tokens as served: -1 in every id of the missing row {@code bad}. */
    private static int[] expected(int request, int n, int bad) {
        int[] out = new int[n * SHAPE.idsPerRow()];
        for (int t = 0; t < n; t++) {
            for (int j = 0; j < SHAPE.idsPerRow(); j++) {
                out[t * SHAPE.idsPerRow() + j] = t == bad ? -1 : id(request, t, j);
            }
        }
        return out;
    }

    @BeforeEach
    void rebuildTheOldStore() throws IOException {
        try (InputStream in = LegacyStoreTest.class.getResourceAsStream(FIXTURE + "store.properties")) {
            Files.write(dir.resolve(StoreManifest.FILE), in.readAllBytes());
        }
        List<byte[]> excerpts = new ArrayList<>();
        try (DataInputStream in = new DataInputStream(LegacyStoreTest.class.getResourceAsStream(FIXTURE + "requests.bin"))) {
            while (in.available() > 0) {
                byte[] b = new byte[in.readInt()];
                in.readFully(b);
                excerpts.add(b);
            }
        }
        assertEquals(3, excerpts.size());
        try (SingleChronicleQueue q = StoreQueues.writable(dir.resolve("requests"), new ConcurrentHashMap<>(), "request", 1 << 20,
                RollCycles.FAST_DAILY); ExcerptAppender appender = q.createAppender()) {
            for (byte[] b : excerpts) {
                try (DocumentContext dc = appender.writingDocument()) {
                    dc.wire().bytes().write(b);
                }
            }
        }
    }

    @Test
    void theOldRecordsReadInTheirDtypeWithSentinelRowsMissing() {
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            assertEquals(StoreManifest.LEGACY_FORMAT, replay.manifest().format());
            assertEquals(RoutingDtype.UINT16, replay.manifest().dtype(), "format 2 kept 256 experts in uint16");
            List<RequestRouting> all = replay.requests().collectList().block();
            assertEquals(List.of("full-a", "gap-b", "long-c"), all.stream().map(RequestRouting::requestId).toList());
            RequestRouting full = all.get(0);
            assertEquals(RoutingDtype.UINT16, full.dtype());
            assertEquals(0, full.missingRowCount());
            assertArrayEquals(expected(0, 4, -1), full.toIntArray());
            assertEquals(255, full.id(0, 0, 1), "expert 255 of an old record");
            RequestRouting gap = all.get(1);
            assertEquals(1, gap.missingRowCount());
            assertTrue(gap.isMissing(1));
            assertArrayEquals(expected(1, 3, 1), gap.toIntArray(), "the row with the sentinel is missing, whole");
            RequestRouting longer = all.get(2);
            assertEquals(1, longer.missingRowCount());
            assertTrue(longer.isMissing(65), "a missing row in the bitmap's second word");
            assertArrayEquals(expected(2, 70, 65), longer.toIntArray());
        }
    }

    @Test
    void theServerServesThemWithTheWritersChecksumAndMissingRowsAsMinusOne() throws Exception {
        try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0)) {
            String manifest = TrainerStores.text(server, "/manifest", null).body();
            assertTrue(manifest.contains("\"numExperts\":256,\"dtype\":\"uint16\",\"storeFormat\":2,\"missingAs\":-1"), manifest);
            TrainerStores.Npy full = TrainerStores.get(server, "/requests/0.npy", null);
            assertEquals(200, full.status(), full.text());
            assertEquals("<u2", full.descr());
            CRC32C crc = new CRC32C();
            crc.update(full.data());
            assertEquals(crc.getValue(), Long.parseLong(full.header("x-r3-crc32c"), 16), "the old writer's checksum of the rows");
            HttpResponse<String> refused = TrainerStores.text(server, "/requests/by-id/gap-b.npy", null);
            assertEquals(409, refused.statusCode(), refused.body());
            assertTrue(refused.body().contains("cannot carry the 1 missing row of positions 0..3 of request 'gap-b'"), refused.body());
            for (String dtype : List.of("int16", "int32", "int64")) {
                TrainerStores.Npy gap = TrainerStores.get(server, "/requests/1.npy?dtype=" + dtype, null);
                assertEquals(200, gap.status(), gap.text());
                int[] expected = expected(1, 3, 1);
                for (int i = 0; i < expected.length; i++) {
                    assertEquals(expected[i], gap.at(i), dtype + " element " + i);
                }
                assertEquals("1", gap.header("x-r3-missing-rows"));
            }
            TrainerStores.Npy tail = TrainerStores.get(server, "/requests/2.npy?start=66", null);
            assertEquals(200, tail.status(), "native rows after the missing one: " + tail.text());
            assertEquals(id(2, 66, 0), tail.at(0));
        }
    }

    @Test
    void aWriterOfThisBuildRefusesToAppendAndChangesNothing() throws IOException {
        byte[] before = Files.readAllBytes(dir.resolve(StoreManifest.FILE));
        StoreException e = assertThrows(StoreException.class, () -> ChronicleRoutingSink.open(StoreConfig.of(dir, SHAPE, 128)));
        assertTrue(e.getMessage().contains("store format 2 holds the ids of 256 experts as uint16 with a sentinel")
                && e.getMessage().contains("It stays readable"), e.getMessage());
        assertArrayEquals(before, Files.readAllBytes(dir.resolve(StoreManifest.FILE)));
    }

    @Test
    void anExportWritesARecordWithAMissingRowAsInt16WithMinusOne() throws IOException {
        Path out = dir.resolve("out");
        try (RoutingReplay replay = RoutingReplay.open(dir); NumpyExport export = NumpyExport.create(out)) {
            for (ReplayedRequest r : replay.fromStart().toIterable()) {
                export.write(r);
            }
            export.finish();
        }
        List<String> manifest = Files.readAllLines(out.resolve(NumpyExport.MANIFEST));
        assertTrue(manifest.get(1).startsWith("full-a.npy\tfull-a\t0\t4\t3\t2\tuint16\t") && manifest.get(1).endsWith("\t0"), manifest.get(1));
        assertTrue(manifest.get(2).startsWith("gap-b.npy\tgap-b\t0\t3\t3\t2\tint16\t") && manifest.get(2).endsWith("\t1"), manifest.get(2));
        byte[] npy = Files.readAllBytes(out.resolve("gap-b.npy"));
        int headerLength = (npy[8] & 0xFF) | (npy[9] & 0xFF) << 8;
        assertTrue(new String(npy, 10, headerLength, java.nio.charset.StandardCharsets.US_ASCII).contains("'descr': '<i2'"));
        ByteBuffer data = ByteBuffer.wrap(npy, 10 + headerLength, npy.length - 10 - headerLength).slice().order(ByteOrder.LITTLE_ENDIAN);
        int[] expected = expected(1, 3, 1);
        for (int i = 0; i < expected.length; i++) {
            assertEquals(expected[i], data.getShort(i * 2), "element " + i);
        }
    }

    @Test
    void aFormat2StoreWhoseDtypeStaysIsUpgradedByAWriterAndKeepsItsOldRecords(@TempDir Path other) throws Exception {
        StoreConfig config = TrainerStores.empty(other, TestStores.SHAPE);
        Path manifest = other.resolve(StoreManifest.FILE);
        Files.writeString(manifest, Files.readString(manifest).replace("format=3", "format=2"));
        assertEquals(StoreManifest.LEGACY_FORMAT, StoreManifest.read(other).format());
        TrainerStores.appendRaw(config, 3, "old", 0, 0, new int[] {1, 2, 3, 4, 5, 6, 65535, 7, 8, 9, 10, 11});
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config)) {
            TestStores.finish(sink, 1, "new");
        }
        assertEquals(StoreManifest.FORMAT, StoreManifest.read(other).format(), "300 experts stay uint16: the writer upgraded the manifest");
        try (RoutingReplay replay = RoutingReplay.open(other)) {
            List<RequestRouting> all = replay.requests().collectList().block();
            assertArrayEquals(new int[] {1, 2, 3, 4, 5, 6, -1, -1, -1, -1, -1, -1}, all.get(0).toIntArray(), "the old record, its sentinel row missing");
            assertEquals("new", all.get(1).requestId());
            assertEquals(0, all.get(1).missingRowCount());
        }
    }
}
