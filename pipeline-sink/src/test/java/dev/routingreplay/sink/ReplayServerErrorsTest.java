package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import net.openhft.chronicle.queue.rollcycles.TestRollCycles;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Bad requests to the replay server are answered with a status and a one-line reason before any body. */
class ReplayServerErrorsTest {
    @TempDir
    Path dir;

    private final HttpClient http = HttpClient.newHttpClient();

    private HttpResponse<String> send(ReplayServer server, String method, String uri) throws Exception {
        HttpRequest req = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + uri)).timeout(Duration.ofSeconds(10))
                .method(method, HttpRequest.BodyPublishers.noBody()).build();
        return http.send(req, HttpResponse.BodyHandlers.ofString());
    }

    private static List<String> indexes(String ndjson) {
        return ndjson.lines().map(l -> l.replaceAll(".*\"index\":\"([0-9a-f]+)\".*", "$1")).toList();
    }

    @Test
    void malformedParametersAre400NamingTheParameterAndValue() throws Exception {
        TestStores.write(StoreConfig.of(dir, TestStores.SHAPE, 64).withMinFreeBytes(0), "a", "b");
        try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0)) {
            for (String query : List.of("after=zz", "after=-5", "after=", "after=10000000000000000", "after=8000000000000000",
                    "limit=-3", "limit=abc", "follow=yes")) {
                for (String follow : List.of("", "&follow=true")) {
                    String uri = "/requests?" + query + (query.startsWith("follow") ? "" : follow);
                    HttpResponse<String> res = send(server, "GET", uri);
                    assertEquals(400, res.statusCode(), uri + ": " + res.body());
                    String name = query.substring(0, query.indexOf('='));
                    String value = query.substring(query.indexOf('=') + 1);
                    assertTrue(res.body().startsWith("bad query parameter " + name + "='" + value + "'"), uri + ": " + res.body());
                    assertEquals(1, res.body().lines().count(), res.body());
                    assertTrue(res.headers().firstValue("content-type").orElse("").startsWith("text/plain"), uri);
                }
            }
            HttpResponse<String> npy = send(server, "GET", "/requests/-5.npy");
            assertEquals(400, npy.statusCode(), npy.body());
            assertTrue(npy.body().contains("'-5'"), npy.body());
        }
    }

    @Test
    void aCursorWithNoRecordIs404BeforeTheStatusLineWithAndWithoutFollow() throws Exception {
        TestStores.write(StoreConfig.of(dir, TestStores.SHAPE, 64).withMinFreeBytes(0), "a", "b");
        try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0)) {
            List<String> idx = indexes(send(server, "GET", "/requests").body());
            assertEquals(2, idx.size(), idx.toString());
            String past = Long.toHexString(Long.parseLong(idx.get(1), 16) + 5);
            for (String uri : List.of("/requests?after=" + past, "/requests?after=" + past + "&follow=true", "/requests/index/" + past + ".npy")) {
                HttpResponse<String> res = send(server, "GET", uri);
                assertEquals(404, res.statusCode(), uri + ": " + res.body());
                assertTrue(res.body().contains("=" + past + ": no record at that index"), uri + ": " + res.body());
            }
            // a known cursor still works: the records after it, then the end
            HttpResponse<String> ok = send(server, "GET", "/requests?after=" + idx.get(0));
            assertEquals(200, ok.statusCode());
            assertEquals(List.of(idx.get(1)), indexes(ok.body()));
            HttpResponse<String> last = send(server, "GET", "/requests?after=" + idx.get(1));
            assertEquals(200, last.statusCode());
            assertEquals("", last.body());
        }
    }

    @Test
    void aCursorDeletedByRetentionIs410NamingTheFirstRecordStillStored() throws Exception {
        StoreConfig config = StoreConfig.of(dir, TestStores.SHAPE, 64).withMinFreeBytes(0).withRollCycle(TestRollCycles.TEST_SECONDLY)
                .withRetention(List.of(), Duration.ofMillis(500));
        long pruned;
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config)) {
            TestStores.finish(sink, 0, "old");
            try (RoutingReplay replay = RoutingReplay.open(dir)) {
                pruned = replay.fromStart().blockFirst(Duration.ofSeconds(10)).index();
            }
            Thread.sleep(1600);
            TestStores.finish(sink, 1, "new");
        }
        try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0)) {
            List<String> idx = indexes(send(server, "GET", "/requests").body());
            assertEquals(1, idx.size(), "the old record was deleted: " + idx);
            String hex = Long.toHexString(pruned);
            for (String uri : List.of("/requests?after=" + hex, "/requests?after=" + hex + "&follow=true", "/requests/index/" + hex + ".npy")) {
                HttpResponse<String> res = send(server, "GET", uri);
                assertEquals(410, res.statusCode(), uri + ": " + res.body());
                assertTrue(res.body().contains(hex) && res.body().contains("first record still stored, " + idx.get(0)), res.body());
            }
        }
    }

    @Test
    void everyRouteAnswers405ToMethodsOtherThanGet() throws Exception {
        TestStores.write(StoreConfig.of(dir, TestStores.SHAPE, 64).withMinFreeBytes(0), "a");
        try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0)) {
            String index = indexes(send(server, "GET", "/requests").body()).get(0);
            for (String path : List.of("/health", "/manifest", "/requests", "/requests?after=zz", "/requests/index/" + index + ".npy", "/requests/0.npy",
                    "/requests/by-id/a.npy")) {
                for (String method : List.of("POST", "PUT", "DELETE", "PATCH", "HEAD")) {
                    HttpResponse<String> res = send(server, method, path);
                    assertEquals(405, res.statusCode(), method + " " + path + ": " + res.body());
                    assertEquals("GET", res.headers().firstValue("allow").orElse(null), method + " " + path);
                    if (!method.equals("HEAD")) {
                        assertTrue(res.body().contains("method " + method + " is not allowed"), res.body());
                    }
                }
                assertTrue(send(server, "GET", path).statusCode() != 405, path);
            }
            HttpResponse<String> unknown = send(server, "POST", "/nothing");
            assertEquals(404, unknown.statusCode(), "an unknown path is 404 whatever the method");
        }
    }
}
