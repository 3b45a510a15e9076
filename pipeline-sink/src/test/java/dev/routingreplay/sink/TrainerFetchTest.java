package dev.routingreplay.sink;

import static dev.routingreplay.sink.TrainerStores.IDS;
import static dev.routingreplay.sink.TrainerStores.LENGTHS;
import static dev.routingreplay.sink.TrainerStores.get;
import static dev.routingreplay.sink.TrainerStores.text;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.sink.RequestRouting;
import java.net.URLEncoder;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.zip.CRC32C;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** The trainer-facing routes: records by ordinal, id and index; slices on the server; checksums; 400s. One store. */
@Timeout(120)
class TrainerFetchTest {
    @TempDir
    static Path dir;
    static ReplayServer server;
    static List<RequestRouting> stored;
    static List<String> indexes;

    @BeforeAll
    static void serve() throws Exception {
        TrainerStores.write(dir);
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            stored = replay.requests().collectList().block(Duration.ofSeconds(20));
            indexes = replay.fromStart().map(r -> Long.toHexString(r.index())).collectList().block(Duration.ofSeconds(20));
        }
        server = ReplayServer.start(dir, "127.0.0.1", 0);
    }

    @AfterAll
    static void stop() {
        server.close();
    }

    private static byte[] rows(RequestRouting r) {
        byte[] out = new byte[r.rows().remaining()];
        r.rows().get(out);
        return out;
    }

    private static long crc(byte[] bytes) {
        CRC32C c = new CRC32C();
        c.update(bytes);
        return c.getValue();
    }

    private static String encode(String id) {
        return URLEncoder.encode(id, StandardCharsets.UTF_8).replace("+", "%20");
    }

    @Test
    void ordinalsCountTheRecordsInWriteOrderAndEveryAddressServesTheSameBytes() throws Exception {
        assertEquals(IDS.size(), stored.size());
        String listing = text(server, "/requests", null).body();
        List<String> lines = listing.lines().toList();
        for (int i = 0; i < IDS.size(); i++) {
            assertTrue(lines.get(i).contains("\"ordinal\":" + i + ","), lines.get(i));
            byte[] expected = rows(stored.get(i));
            TrainerStores.Npy byOrdinal = get(server, "/requests/" + i + ".npy", null);
            TrainerStores.Npy byIndex = get(server, "/requests/index/" + indexes.get(i) + ".npy", null);
            assertEquals(200, byOrdinal.status(), byOrdinal.text());
            assertArrayEquals(expected, byOrdinal.data(), "ordinal " + i);
            assertArrayEquals(byOrdinal.body(), byIndex.body(), "ordinal " + i + " and index " + indexes.get(i));
            assertArrayEquals(new int[] {LENGTHS[i], 4, 2}, byOrdinal.shape());
            assertEquals("<u2", byOrdinal.descr());
            assertEquals(Integer.toString(i), byOrdinal.header("x-r3-ordinal"));
            assertEquals(Integer.toString(i), byIndex.header("x-r3-ordinal"));
            assertEquals(indexes.get(i), byOrdinal.header("x-r3-index"));
            assertEquals(Integer.toString(LENGTHS[i]), byOrdinal.header("x-r3-seq-len"));
            assertEquals(encode(IDS.get(i)), byOrdinal.header("x-r3-request-id"));
            assertEquals(TrainerStores.id(i, LENGTHS[i] - 1, 3, 1), byOrdinal.at(byOrdinal.data().length / 2 - 1));
        }
        // an id that needs encoding; a repeated id is its newest record (ordinal 4, round 1)
        TrainerStores.Npy odd = get(server, "/requests/by-id/" + encode(IDS.get(1)) + ".npy", null);
        assertEquals(200, odd.status(), odd.text());
        assertEquals("1", odd.header("x-r3-ordinal"));
        TrainerStores.Npy repeated = get(server, "/requests/by-id/a.npy", null);
        assertEquals("4", repeated.header("x-r3-ordinal"));
        assertEquals("1", repeated.header("x-r3-round"));
        assertArrayEquals(rows(stored.get(4)), repeated.data());

        HttpResponse<String> none = text(server, "/requests/5.npy", null);
        assertEquals(404, none.statusCode());
        assertEquals("ordinal 5: no record with that ordinal (the store holds ordinals 0 to 4)\n", none.body());
        HttpResponse<String> noId = text(server, "/requests/by-id/b.npy", null);
        assertEquals(404, noId.statusCode());
        assertEquals("request id 'b': no record with that id\n", noId.body());
        assertEquals(400, text(server, "/requests/by-id/%FF.npy", null).statusCode(), "not UTF-8");
        assertEquals(400, text(server, "/requests/-1.npy", null).statusCode());
        HttpResponse<String> hex = text(server, "/requests/" + indexes.get(0) + ".npy", null);
        assertEquals(400, hex.statusCode(), "a hex index on the ordinal route is refused, not read as an ordinal: " + hex.body());
        assertTrue(hex.body().contains("/requests/index/<hex>.npy"), hex.body());
        String manifest = text(server, "/manifest", null).body();
        assertTrue(manifest.endsWith("\"firstOrdinal\":0,\"lastOrdinal\":4}"), manifest);
    }

    /** What the server must send for record {@code o} and the options, computed here from the routing. */
    private static long[] expected(int o, int start, int from, int to, boolean dropLast) {
        RequestRouting r = stored.get(o);
        int end = dropLast ? r.seqLen() - 1 : r.seqLen();
        long[] out = new long[(end - start) * (to - from) * 2];
        int i = 0;
        for (int p = start; p < end; p++) {
            for (int l = from; l < to; l++) {
                for (int k = 0; k < 2; k++) {
                    out[i++] = r.id(p, l, k);
                }
            }
        }
        return out;
    }

    @Test
    void startLayersDropLastAndDtypeAreAppliedOnTheServer() throws Exception {
        record Case(String query, int start, int from, int to, boolean dropLast, String descr) {
        }
        List<Case> cases = List.of(
                new Case("", 0, 0, 4, false, "<u2"),
                new Case("?start=2", 2, 0, 4, false, "<u2"),
                new Case("?layers=1:3", 0, 1, 3, false, "<u2"),
                new Case("?layers=:1", 0, 0, 1, false, "<u2"),
                new Case("?layers=3:", 0, 3, 4, false, "<u2"),
                new Case("?drop_last=true", 0, 0, 4, true, "<u2"),
                new Case("?drop_last=false&dtype=native", 0, 0, 4, false, "<u2"),
                new Case("?dtype=uint16", 0, 0, 4, false, "<u2"),
                new Case("?dtype=int32", 0, 0, 4, false, "<i4"),
                new Case("?dtype=int64&start=1&layers=2:4&drop_last=true", 1, 2, 4, true, "<i8"),
                new Case("?start=4&drop_last=true", 4, 0, 4, true, "<u2"),
                new Case("?start=5", 5, 0, 4, false, "<u2"));
        for (Case c : cases) {
            TrainerStores.Npy npy = get(server, "/requests/0.npy" + c.query(), null);
            assertEquals(200, npy.status(), c.query() + ": " + npy.text());
            assertEquals(c.descr(), npy.descr(), c.query());
            long[] want = expected(0, c.start(), c.from(), c.to(), c.dropLast());
            int rows = (c.dropLast() ? 4 : 5) - c.start();
            assertArrayEquals(new int[] {rows, c.to() - c.from(), 2}, npy.shape(), c.query());
            long[] got = new long[want.length];
            for (int i = 0; i < got.length; i++) {
                got[i] = npy.at(i);
            }
            assertArrayEquals(want, got, c.query());
            assertEquals(Long.toHexString(crc(npy.body())), Long.toHexString(Long.parseLong(npy.header("x-r3-body-crc32c"), 16)), c.query());
            assertEquals(Long.toString(crc(rows(stored.get(0))), 16), Long.toString(Long.parseLong(npy.header("x-r3-crc32c"), 16), 16),
                    "the stored checksum is the whole record's, whatever the slice: " + c.query());
        }
        // the multi-turn identity: the first turn's rows then the second's are the whole request
        TrainerStores.Npy first = get(server, "/requests/2.npy?layers=0:4", null);
        TrainerStores.Npy turn = get(server, "/requests/2.npy?start=3", null);
        byte[] joined = new byte[first.data().length];
        System.arraycopy(get(server, "/requests/2.npy", null).data(), 0, joined, 0, 3 * 16);
        System.arraycopy(turn.data(), 0, joined, 3 * 16, turn.data().length);
        assertArrayEquals(first.data(), joined);
    }

    @Test
    void theChecksumHeadersEqualACrc32cComputedHere() throws Exception {
        for (int i = 0; i < IDS.size(); i++) {
            TrainerStores.Npy npy = get(server, "/requests/" + i + ".npy", null);
            String stored32 = npy.header("x-r3-crc32c");
            assertEquals(8, stored32.length(), stored32);
            assertEquals(crc(rows(stored.get(i))), Long.parseLong(stored32, 16), "ordinal " + i);
            assertEquals(crc(npy.data()), Long.parseLong(stored32, 16), "a whole native answer's array bytes have the stored checksum");
            assertEquals(crc(npy.body()), Long.parseLong(npy.header("x-r3-body-crc32c"), 16), "ordinal " + i);
        }
    }

    @Test
    void badOptionsAre400NamingTheParameterAndValue() throws Exception {
        List<List<String>> cases = List.of(
                List.of("start=-1", "bad query parameter start='-1'"),
                List.of("start=x", "bad query parameter start='x'"),
                List.of("start=99999999999", "bad query parameter start='99999999999'"),
                List.of("start=6", "bad query parameter start='6': past the end of request 'a' (seq_len 5)"),
                List.of("start=5&drop_last=true", "bad query parameter start='5': past the end of request 'a' (seq_len 5, 4 rows with drop_last)"),
                List.of("layers=3:2", "bad query parameter layers='3:2': want FROM:TO, a half-open range of MoE layers with 0 <= FROM < TO <= 4"),
                List.of("layers=2:2", "bad query parameter layers='2:2'"),
                List.of("layers=0:5", "bad query parameter layers='0:5'"),
                List.of("layers=a:b", "bad query parameter layers='a:b'"),
                List.of("layers=2", "bad query parameter layers='2'"),
                List.of("layers=-1:2", "bad query parameter layers='-1:2'"),
                List.of("drop_last=yes", "bad query parameter drop_last='yes': want true or false"),
                List.of("dtype=float32", "bad query parameter dtype='float32': want native (the stored uint16), int16, int32 or int64"),
                List.of("dtype=uint8", "bad query parameter dtype='uint8'"),
                List.of("Start=1", "unknown query parameter 'Start': the .npy routes take start, layers, drop_last, dtype"),
                List.of("start=1&start=2", "query parameter start given 2 times"));
        for (List<String> c : cases) {
            for (String route : List.of("/requests/0.npy", "/requests/by-id/a.npy", "/requests/index/" + indexes.get(0) + ".npy")) {
                HttpResponse<String> res = text(server, route + "?" + c.get(0), null);
                if (c.get(0).startsWith("start=") && c.get(1).contains("past the end") && !route.equals("/requests/0.npy")) {
                    continue; // the newest 'a' is shorter; the index route is record 0 as well
                }
                assertEquals(400, res.statusCode(), route + "?" + c.get(0) + ": " + res.body());
                assertTrue(res.body().contains(c.get(1)), route + "?" + c.get(0) + ": " + res.body());
                assertEquals(1, res.body().lines().count(), res.body());
            }
        }
    }

    @Test
    void theIndexKeepsOneRunPerQueueFileAndASmallIdTable() {
        assertEquals(1, server.index().runs(), "five records in one file are one run");
        assertTrue(server.index().idTableBytes() <= 8 * 1024, "the id table of five records: " + server.index().idTableBytes());
    }
}
