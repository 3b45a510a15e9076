package dev.routingreplay.sink;

import static dev.routingreplay.sink.TrainerStores.get;
import static dev.routingreplay.sink.TrainerStores.text;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import java.io.InputStream;
import java.io.RandomAccessFile;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32C;
import net.openhft.chronicle.queue.rollcycles.TestRollCycles;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Older records, the sentinel, damaged records, retention, the bearer token and the follower bound with it. */
@Timeout(120)
class TrainerServerTest {
    @TempDir
    Path dir;

    private static long crc(byte[] bytes) {
        CRC32C c = new CRC32C();
        c.update(bytes);
        return c.getValue();
    }

    @Test
    void version2RecordsAreServedWithoutTheStoredChecksumAndANewWriterContinuesTheirOrdinals() throws Exception {
        StoreConfig config = TrainerStores.empty(dir, TestStores.SHAPE);
        int[] first = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
        int[] second = {299, 0, 1, 2, 3, 4};
        TrainerStores.appendRaw(config, 2, "old-1", 0, -1, first);
        TrainerStores.appendRaw(config, 2, "old-2", 0, -1, second);
        try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0)) {
            TrainerStores.Npy a = get(server, "/requests/0.npy", null);
            assertEquals(200, a.status(), a.text());
            assertArrayEquals(new int[] {2, 3, 2}, a.shape());
            assertEquals(12, a.at(11));
            assertNull(a.header("x-r3-crc32c"), "a version 2 record has no stored checksum to send");
            assertEquals(crc(a.body()), Long.parseLong(a.header("x-r3-body-crc32c"), 16));
            TrainerStores.Npy b = get(server, "/requests/by-id/old-2.npy?dtype=int64&layers=0:1", null);
            assertEquals("1", b.header("x-r3-ordinal"));
            assertEquals(299, b.at(0));
            assertEquals(crc(b.body()), Long.parseLong(b.header("x-r3-body-crc32c"), 16));
        }
        // this build's writer appends version 3 records after them, numbered on
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config)) {
            TestStores.finish(sink, 0, "new");
        }
        try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0)) {
            TrainerStores.Npy c = get(server, "/requests/2.npy", null);
            assertEquals(200, c.status(), c.text());
            assertEquals("new", c.header("x-r3-request-id"));
            assertEquals(crc(c.data()), Long.parseLong(c.header("x-r3-crc32c"), 16));
            assertTrue(text(server, "/requests", null).body().contains("\"ordinal\":2,\"requestId\":\"new\""));
        }
    }

    @Test
    void aVersion3RowHoldingTheSentinelIsAMissingRow409InNativeAndMinusOneInSignedDtypes() throws Exception {
        StoreConfig config = TrainerStores.empty(dir, new RoutingShape(2, 2, 16));
        TrainerStores.appendRaw(config, 3, "gap", 0, 0, new int[] {1, 2, 3, 4, 255, 255, 255, 255, 5, 255, 6, 7, 8, 9, 10, 11});
        try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0)) {
            HttpResponse<String> nat = text(server, "/requests/0.npy", null);
            assertEquals(409, nat.statusCode(), nat.body());
            assertTrue(nat.body().contains("cannot carry the 2 missing rows") && nat.body().contains("dtype=int16, int32, int64"), nat.body());
            TrainerStores.Npy tail = get(server, "/requests/0.npy?start=3", null);
            assertEquals(200, tail.status(), "a native slice without a missing row is served: " + tail.text());
            assertEquals("|u1", tail.descr());
            assertEquals("0", tail.header("x-r3-missing-rows"));
            for (String dtype : List.of("int16", "int32", "int64")) {
                TrainerStores.Npy wide = get(server, "/requests/0.npy?dtype=" + dtype, null);
                long[] got = new long[16];
                for (int i = 0; i < 16; i++) {
                    got[i] = wide.at(i);
                }
                // row 2 held the sentinel in two ids: the whole row is missing
                assertArrayEquals(new long[] {1, 2, 3, 4, -1, -1, -1, -1, -1, -1, -1, -1, 8, 9, 10, 11}, got, dtype);
                assertEquals("2", wide.header("x-r3-missing-rows"));
                assertEquals("invalid-id=2", wide.header("x-r3-missing-reasons"), "a record from before reasons: its missing rows were dropped ids");
                assertEquals(crc(wide.body()), Long.parseLong(wide.header("x-r3-body-crc32c"), 16));
            }
            assertTrue(text(server, "/requests", null).body().contains("\"seqLen\":4,\"missingRows\":2,\"missingReasons\":{\"invalid-id\":2}}"));
            assertTrue(text(server, "/manifest", null).body().contains("\"dtype\":\"uint8\",\"storeFormat\":3,\"missingAs\":-1"));
        }
    }

    @Test
    void aDamagedRecordIs500NamingItAndNothingOfItIsServed() throws Exception {
        TrainerStores.write(dir);
        Path file;
        try (var files = Files.list(dir.resolve("requests"))) {
            file = files.filter(f -> f.toString().endsWith(".cq4")).findFirst().orElseThrow();
        }
        byte[] all = Files.readAllBytes(file);
        int at = -1;
        for (int i = 0, seen = 0; i + 5 <= all.length; i++) {
            if (all[i] == 0x52 && all[i + 1] == 0x33 && all[i + 2] == 0x52 && all[i + 3] == 0x51 && all[i + 4] == RecordFormat.REQUEST_VERSION
                    && seen++ == 2) {
                at = i;
                break;
            }
        }
        assertTrue(at > 0, "the third record's start");
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.seek(at + 50); // a row byte of record "c" (its header: 9 + 1 + 8 + 8 + 17 + 4 = 47 bytes)
            int b = f.read();
            f.seek(at + 50);
            f.write(b ^ 0x10);
        }
        try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0)) {
            for (String uri : List.of("/requests/2.npy", "/requests/by-id/c.npy", "/requests/2.npy?layers=1:2")) {
                HttpResponse<String> res = text(server, uri, null);
                assertEquals(500, res.statusCode(), uri + ": " + res.body());
                assertTrue(res.body().contains("the stored record is damaged") && res.body().contains("checksum"), res.body());
                assertFalse(res.body().contains(dir.toString()), "never the store's path: " + res.body());
            }
            assertEquals(200, get(server, "/requests/3.npy", null).status(), "the other records are served");
        }
    }

    @Test
    void aCutRequestFileStillServesTheRecordsBeforeTheCut() throws Exception {
        TrainerStores.write(dir);
        Path file;
        try (var files = Files.list(dir.resolve("requests"))) {
            file = files.filter(f -> f.toString().endsWith(".cq4")).findFirst().orElseThrow();
        }
        byte[] all = Files.readAllBytes(file);
        int last = -1;
        for (int i = 0; i + 5 <= all.length; i++) {
            if (all[i] == 0x52 && all[i + 1] == 0x33 && all[i + 2] == 0x52 && all[i + 3] == 0x51 && all[i + 4] == RecordFormat.REQUEST_VERSION) {
                last = i;
            }
        }
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.setLength(last + 20); // inside the last record's header
        }
        try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0)) {
            TrainerStores.Npy first = get(server, "/requests/0.npy", null);
            assertEquals(200, first.status(), first.text());
            assertEquals(200, get(server, "/requests/by-id/c.npy", null).status());
            int status = text(server, "/requests/4.npy", null).statusCode();
            assertTrue(status == 404 || status == 500, "the cut record: " + status);
        }
    }

    @Test
    void recordsDeletedByRetentionAre410AndTheRestKeepTheirOrdinals() throws Exception {
        StoreConfig config = StoreConfig.of(dir, TestStores.SHAPE, 64).withMinFreeBytes(0).withRollCycle(TestRollCycles.TEST_SECONDLY)
                .withRetention(List.of(), Duration.ofMillis(500));
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config)) {
            TestStores.finish(sink, 0, "old");
            try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0)) {
                assertEquals(200, get(server, "/requests/0.npy", null).status());
                Thread.sleep(1600);
                TestStores.finish(sink, 1, "new");
                TrainerStores.Npy kept = get(server, "/requests/1.npy", null);
                assertEquals(200, kept.status(), kept.text());
                assertEquals("new", kept.header("x-r3-request-id"));
                long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
                HttpResponse<String> gone;
                do {
                    Thread.sleep(100);
                    gone = text(server, "/requests/0.npy", null);
                } while (gone.statusCode() == 200 && System.nanoTime() < deadline);
                assertEquals(410, gone.statusCode(), gone.body());
                assertTrue(gone.body().startsWith("ordinal 0: no record: it lies before the first record still stored, ordinal 1"), gone.body());
                HttpResponse<String> goneId = text(server, "/requests/by-id/old.npy", null);
                assertEquals(410, goneId.statusCode(), goneId.body());
            }
        }
        try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0)) {
            assertEquals("1", get(server, "/requests/1.npy", null).header("x-r3-ordinal"), "a restarted server numbers the same");
            assertEquals(410, text(server, "/requests/0.npy", null).statusCode());
        }
    }

    @Test
    void theTokenIsRequiredOnEveryRouteButHealthAndNeverEchoed() throws Exception {
        String token = "s3cret-Token_0123456789";
        TrainerStores.write(dir);
        try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0, ReplayServer.Limits.DEFAULT, token)) {
            for (String uri : List.of("/manifest", "/requests", "/requests/0.npy", "/requests/by-id/a.npy", "/requests/index/0.npy", "/nothing",
                    "/requests/0.npy?start=zz")) {
                HttpResponse<String> none = text(server, uri, null);
                assertEquals(401, none.statusCode(), uri);
                assertEquals("Bearer realm=\"r3\"", none.headers().firstValue("www-authenticate").orElse(null), uri);
                assertTrue(none.body().startsWith("missing bearer token"), none.body());
                for (String wrong : List.of("s3cret-Token_012345678", "s3cret-Token_0123456789x", "x", "Basic " + token, "Bearer")) {
                    HttpResponse<String> bad = text(server, uri, wrong);
                    assertEquals(401, bad.statusCode(), uri + " with " + wrong);
                    assertTrue(bad.headers().firstValue("www-authenticate").orElse("").startsWith("Bearer realm=\"r3\""), uri);
                    assertFalse(bad.body().contains(token) || bad.body().contains("s3cret"), bad.body());
                }
                assertTrue(text(server, uri, token).statusCode() != 401, uri);
            }
            assertEquals(200, text(server, "/health", null).statusCode());
            assertEquals("{\"status\":\"ok\"}", text(server, "/health", null).body());
            assertEquals(200, text(server, "/health", "wrong").statusCode(), "health ignores the header");
            assertEquals(200, text(server, "/manifest", "bearer " + token).statusCode(), "the scheme is case-insensitive");
            assertEquals(200, get(server, "/requests/0.npy", token).status());
        }
    }

    @Test
    void theFollowerBoundHoldsWithATokenAndRefusedFollowersTakeNoPlace() throws Exception {
        String token = "tok";
        TestStores.write(StoreConfig.of(dir, TestStores.SHAPE, 64).withMinFreeBytes(0), "a");
        HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();
        try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0, new ReplayServer.Limits(Duration.ofSeconds(30), 1), token)) {
            URI follow = URI.create("http://127.0.0.1:" + server.port() + "/requests?follow=true");
            List<InputStream> open = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                HttpResponse<InputStream> anonymous = http.send(HttpRequest.newBuilder(follow).timeout(Duration.ofSeconds(10)).build(),
                        HttpResponse.BodyHandlers.ofInputStream());
                assertEquals(401, anonymous.statusCode());
                anonymous.body().close();
            }
            assertEquals(0, server.followers(), "401s take no follower place");
            HttpResponse<InputStream> first = http.send(HttpRequest.newBuilder(follow).header("Authorization", "Bearer " + token)
                    .timeout(Duration.ofSeconds(10)).build(), HttpResponse.BodyHandlers.ofInputStream());
            assertEquals(200, first.statusCode());
            open.add(first.body());
            HttpResponse<String> second = http.send(HttpRequest.newBuilder(follow).header("Authorization", "Bearer " + token)
                    .timeout(Duration.ofSeconds(10)).build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(503, second.statusCode());
            assertTrue(second.body().startsWith("too many live followers (at most 1"), second.body());
            assertEquals(1, server.followers());
            for (InputStream in : open) {
                in.close();
            }
        }
    }
}
