package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The server closes slow-loris connections, bounds live followers, and never shows the store's path. */
class ReplayServerHygieneTest {
    @TempDir
    Path dir;

    private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build();

    private ReplayServer server(ReplayServer.Limits limits) {
        TestStores.write(StoreConfig.of(dir, TestStores.SHAPE, 64).withMinFreeBytes(0), "a", "b");
        return ReplayServer.start(dir, "127.0.0.1", 0, limits);
    }

    /** Milliseconds until the server closes the socket (reads until end of stream), or -1 if it stays open 10 s. */
    private static long millisUntilClosed(Socket socket, long start) throws IOException {
        socket.setSoTimeout(10_000);
        InputStream in = socket.getInputStream();
        try {
            while (in.read() >= 0) {
                // a response to a partial request would be a bug; keep reading to the end
            }
        } catch (java.net.SocketTimeoutException e) {
            return -1;
        } catch (IOException e) {
            // reset by the server: closed too
        }
        return (System.nanoTime() - start) / 1_000_000;
    }

    @Test
    void aPartialRequestIsClosedWithinTheIdleTimeout() throws Exception {
        try (ReplayServer server = server(new ReplayServer.Limits(Duration.ofMillis(500), 4));
                Socket socket = new Socket(InetAddress.getLoopbackAddress(), server.port())) {
            long start = System.nanoTime();
            socket.getOutputStream().write("GET /requests HTTP/1.1\r\nHost: x\r\n".getBytes(StandardCharsets.US_ASCII));
            long closedAfter = millisUntilClosed(socket, start);
            assertTrue(closedAfter >= 400 && closedAfter < 3000, "closed after " + closedAfter + " ms (timeout 500 ms)");
        }
    }

    @Test
    void aRequestDribbledByteByByteIsClosedAtTheDeadlineToo() throws Exception {
        try (ReplayServer server = server(new ReplayServer.Limits(Duration.ofMillis(500), 4));
                Socket socket = new Socket(InetAddress.getLoopbackAddress(), server.port())) {
            long start = System.nanoTime();
            OutputStream out = socket.getOutputStream();
            Thread dribbler = new Thread(() -> {
                byte[] header = "GET /requests HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                        .getBytes(StandardCharsets.US_ASCII);
                try {
                    for (byte b : header) {
                        out.write(b);
                        out.flush();
                        Thread.sleep(50);
                    }
                } catch (IOException | InterruptedException e) {
                    // closed by the server: what the test waits for
                }
            });
            dribbler.start();
            long closedAfter = millisUntilClosed(socket, start);
            dribbler.interrupt();
            assertTrue(closedAfter >= 400 && closedAfter < 2000, "closed after " + closedAfter + " ms although a byte came every 50 ms");
        }
    }

    @Test
    void aKeptAliveConnectionStaysUsableWithinTheTimeout() throws Exception {
        try (ReplayServer server = server(new ReplayServer.Limits(Duration.ofMillis(800), 4))) {
            for (int i = 0; i < 3; i++) {
                HttpResponse<String> res = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + "/manifest"))
                        .timeout(Duration.ofSeconds(20)).build(), HttpResponse.BodyHandlers.ofString());
                assertEquals(200, res.statusCode());
                Thread.sleep(300);
            }
        }
    }

    @Test
    void followersPastTheBoundAre503AndASlotFreesWhenOneLeaves() throws Exception {
        try (ReplayServer server = server(new ReplayServer.Limits(Duration.ofSeconds(30), 2))) {
            URI follow = URI.create("http://127.0.0.1:" + server.port() + "/requests?follow=true");
            List<InputStream> open = new ArrayList<>();
            for (int i = 0; i < 2; i++) {
                HttpResponse<InputStream> res = http.send(HttpRequest.newBuilder(follow).timeout(Duration.ofSeconds(10)).build(), HttpResponse.BodyHandlers.ofInputStream());
                assertEquals(200, res.statusCode());
                open.add(res.body());
            }
            HttpResponse<InputStream> third = http.send(HttpRequest.newBuilder(follow).timeout(Duration.ofSeconds(10)).build(),
                    HttpResponse.BodyHandlers.ofInputStream());
            if (third.statusCode() != 503) {
                third.body().close();
            }
            assertEquals(503, third.statusCode(), "a third follower past the bound of 2");
            String body = new String(third.body().readAllBytes(), StandardCharsets.UTF_8);
            assertTrue(body.startsWith("too many live followers (at most 2, set by --max-followers)"), body);
            assertEquals("5", third.headers().firstValue("retry-after").orElse(null));
            HttpResponse<String> finite = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + server.port() + "/requests"))
                    .timeout(Duration.ofSeconds(20)).build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(200, finite.statusCode(), "a finite listing is not a follower");

            open.remove(0).close();
            long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
            while (server.followers() > 1 && System.nanoTime() < deadline) {
                Thread.sleep(10);
            }
            assertEquals(1, server.followers());
            HttpResponse<InputStream> again = http.send(HttpRequest.newBuilder(follow).timeout(Duration.ofSeconds(10)).build(), HttpResponse.BodyHandlers.ofInputStream());
            assertEquals(200, again.statusCode());
            again.body().close();
            for (InputStream in : open) {
                in.close();
            }
        }
    }

    @Test
    void errorBodiesNeverShowTheStorePath() throws Exception {
        try (ReplayServer server = server(ReplayServer.Limits.DEFAULT)) {
            String base = "http://127.0.0.1:" + server.port();
            String first = http.send(HttpRequest.newBuilder(URI.create(base + "/requests")).timeout(Duration.ofSeconds(20)).build(), HttpResponse.BodyHandlers.ofString())
                    .body().lines().findFirst().orElseThrow().replaceAll(".*\"index\":\"([0-9a-f]+)\".*", "$1");
            String past = Long.toHexString(Long.parseLong(first, 16) + 0x100);
            for (String uri : List.of("/requests/index/" + past + ".npy", "/requests/index/0.npy", "/requests/99.npy", "/requests?after=" + past,
                    "/requests?after=0", "/requests?after=zz", "/requests/zz.npy", "/requests/x.txt", "/nothing", "/requests/a/b",
                    "/requests/by-id/nobody.npy", "/requests/by-id/%FF.npy", "/requests/0.npy?layers=9:12", "/requests/0.npy?start=99")) {
                HttpResponse<String> res = http.send(HttpRequest.newBuilder(URI.create(base + uri)).timeout(Duration.ofSeconds(20)).build(),
                        HttpResponse.BodyHandlers.ofString());
                assertTrue(res.statusCode() >= 400, uri);
                assertFalse(res.body().contains(dir.toAbsolutePath().toString()) || res.body().contains(dir.getFileName().toString()),
                        uri + " shows the store's path: " + res.body());
            }
        }
    }
}
