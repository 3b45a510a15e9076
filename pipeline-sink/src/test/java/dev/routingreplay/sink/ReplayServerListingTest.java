package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.RandomAccessFile;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Issue 21 cases 8 and 9: the listing goes on past a damaged record, and any all-digit limit is clamped. */
@Timeout(120)
class ReplayServerListingTest {
    @TempDir
    Path dir;

    private final HttpClient http = HttpClient.newHttpClient();

    private HttpResponse<String> get(ReplayServer server, String uri) throws Exception {
        HttpRequest req = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + uri)).timeout(Duration.ofSeconds(10))
                .GET().build();
        return http.send(req, HttpResponse.BodyHandlers.ofString());
    }

    /** Flips the last byte of the (unique) id {@code id} in the request file: its record fails its checksum. */
    private static void damage(Path dir, String id) throws Exception {
        Path file = StoreFiles.requestFiles(dir).get(0);
        byte[] all = Files.readAllBytes(file);
        byte[] needle = id.getBytes(StandardCharsets.UTF_8);
        int at = -1;
        outer:
        for (int i = 0; i + needle.length <= all.length; i++) {
            for (int j = 0; j < needle.length; j++) {
                if (all[i + j] != needle[j]) {
                    continue outer;
                }
            }
            at = i + needle.length - 1;
            break;
        }
        assertTrue(at > 0, "found " + id);
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.seek(at);
            f.write(all[at] ^ 0x40);
        }
    }

    @Test
    void theListingGoesOnPastADamagedRecordWithALineSayingSoAndAfterWorksFromIt() throws Exception {
        TestStores.write(StoreConfig.of(dir, TestStores.SHAPE, 64).withMinFreeBytes(0), "req-a", "req-b", "req-c");
        damage(dir, "req-b");
        try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0)) {
            HttpResponse<String> all = get(server, "/requests");
            assertEquals(200, all.statusCode());
            List<String> lines = all.body().lines().toList();
            assertEquals(3, lines.size(), all.body());
            assertTrue(lines.get(0).contains("\"requestId\":\"req-a\""), lines.get(0));
            String damaged = lines.get(1);
            assertTrue(damaged.contains("\"damaged\":true") && damaged.contains("\"reason\":\"") && damaged.contains("checksum"), damaged);
            assertTrue(lines.get(2).contains("\"requestId\":\"req-c\""), lines.get(2));
            String index = damaged.replaceAll(".*\"index\":\"([0-9a-f]+)\".*", "$1");
            HttpResponse<String> after = get(server, "/requests?after=" + index);
            assertEquals(200, after.statusCode(), after.body());
            assertEquals(1, after.body().lines().count(), after.body());
            assertTrue(after.body().contains("\"requestId\":\"req-c\""), after.body());
        }
    }

    @Test
    void anyAllDigitLimitIsClampedNotRefused() throws Exception {
        TestStores.write(StoreConfig.of(dir, TestStores.SHAPE, 64).withMinFreeBytes(0), "a", "b");
        try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0)) {
            for (String limit : List.of("2147483648", "9223372036854775807", "9223372036854775808", "123456789012345678901234567890")) {
                HttpResponse<String> res = get(server, "/requests?limit=" + limit);
                assertEquals(200, res.statusCode(), limit + ": " + res.body());
                assertEquals(2, res.body().lines().count(), limit + ": " + res.body());
            }
            assertEquals(1, get(server, "/requests?limit=1").body().lines().count());
        }
    }
}
