package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.pipeline.EngineFeed;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Routing;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.Disposable;
import reactor.netty.http.client.HttpClient;
import reactor.util.function.Tuple2;

class ReplayServerTest {
    private static final RoutingShape SHAPE = new RoutingShape(3, 2, 300);

    @TempDir
    Path dir;

    private static void finish(EngineFeed feed, HostEngine engine, String id, int request) {
        long[] slots = {2L * request, 2L * request + 1};
        feed.emit(new RequestAdmitted(id));
        feed.emit(engine.step(request, slots, (t, l, k) -> Routing.id(request, t, l, k, 300)));
        feed.emit(new RequestFinished(id, new int[] {2 * request, 2 * request + 1}));
    }

    private static Tuple2<Integer, String> get(HttpClient client, String uri) {
        return client.get().uri(uri).responseSingle((res, body) -> body.asString(StandardCharsets.UTF_8).defaultIfEmpty("")
                .map(text -> reactor.util.function.Tuples.of(res.status().code(), text))).block(Duration.ofSeconds(10));
    }

    @Test
    void trainersFetchManifestListingAndNpyOverHttpAndFollowNewRecords() throws Exception {
        HostDevice device = new HostDevice();
        EngineFeed feed = new EngineFeed();
        try (HostEngine engine = new HostEngine(device, SHAPE, 4);
                ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, SHAPE, 64).withMinFreeBytes(0))) {
            CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(2).maxTokensPerStep(4).build();
            List<EngineEvent> acked = new CopyOnWriteArrayList<>();
            Disposable run = feed.flux().transform(pipeline).subscribe(acked::add);
            finish(feed, engine, "first \"quoted\"", 0);
            finish(feed, engine, "second", 1);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (acked.size() < 6 && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0)) {
                HttpClient client = HttpClient.create().baseUrl("http://127.0.0.1:" + server.port());
                Tuple2<Integer, String> manifest = get(client, "/manifest");
                assertEquals(200, manifest.getT1());
                assertEquals("{\"moeLayers\":3,\"topK\":2,\"numExperts\":300,\"dtype\":\"uint16\",\"storeFormat\":3,\"missingAs\":-1,\"missingDtypes\":[\"int16\",\"int32\",\"int64\"],\"slotCapacity\":64,"
                        + "\"firstOrdinal\":0,\"lastOrdinal\":1}", manifest.getT2());

                Tuple2<Integer, String> listing = get(client, "/requests");
                assertEquals(200, listing.getT1());
                String[] lines = listing.getT2().strip().split("\n");
                assertEquals(2, lines.length, listing.getT2());
                assertTrue(lines[0].contains("\"requestId\":\"first \\\"quoted\\\"\""), lines[0]);
                assertTrue(lines[1].contains("\"ordinal\":1,\"requestId\":\"second\",\"round\":0,\"seqLen\":2"), lines[1]);
                String firstIndex = lines[0].replaceAll(".*\"index\":\"([0-9a-f]+)\".*", "$1");

                byte[] npy = client.get().uri("/requests/index/" + firstIndex + ".npy").responseContent().aggregate().asByteArray()
                        .block(Duration.ofSeconds(10));
                List<RequestRouting> stored = RoutingReplay.open(dir).requests().collectList().block(Duration.ofSeconds(10));
                RequestRouting first = stored.get(0);
                byte[] header = NpyWriter.header(first);
                byte[] rows = new byte[first.rows().remaining()];
                first.rows().get(rows);
                assertArrayEquals(header, java.util.Arrays.copyOf(npy, header.length));
                assertArrayEquals(rows, java.util.Arrays.copyOfRange(npy, header.length, npy.length));
                assertEquals(Routing.id(0, 1, 2, 1, 300), ByteBuffer.wrap(rows).order(java.nio.ByteOrder.LITTLE_ENDIAN)
                        .getShort(((1 * 3 + 2) * 2 + 1) * 2));

                if (NumpyExportTest.pythonWithNumpy()) {
                    // what a Python trainer does
                    String script = "import io, sys, urllib.request, numpy as np\n"
                            + "a = np.load(io.BytesIO(urllib.request.urlopen(sys.argv[1]).read()))\n"
                            + "print(a.dtype, a.shape, int(a[1, 2, 1]))";
                    Process py = new ProcessBuilder("python3", "-c", script,
                            "http://127.0.0.1:" + server.port() + "/requests/0.npy").redirectErrorStream(true).start();
                    String printed = new String(py.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
                    assertTrue(py.waitFor(60, TimeUnit.SECONDS));
                    assertEquals("uint16 (2, 3, 2) " + Routing.id(0, 1, 2, 1, 300), printed);
                }

                assertEquals(404, get(client, "/requests/index/" + Long.toHexString(Long.parseLong(firstIndex, 16) + 0x1000) + ".npy").getT1());
                assertEquals(404, get(client, "/requests/2.npy").getT1());
                assertEquals(400, get(client, "/requests/zz.npy").getT1());
                assertEquals(400, get(client, "/requests?limit=-3").getT1());
                Tuple2<Integer, String> after = get(client, "/requests?after=" + firstIndex);
                assertEquals(1, after.getT2().strip().split("\n").length);

                // a trainer following live sees a record written after it connected
                List<String> followed = new CopyOnWriteArrayList<>();
                Disposable follow = client.get().uri("/requests?follow=true").responseContent().asString()
                        .flatMapIterable(chunk -> List.of(chunk.split("\n"))).filter(s -> !s.isBlank())
                        .subscribe(followed::add);
                deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                while (followed.size() < 2 && System.nanoTime() < deadline) {
                    Thread.sleep(5);
                }
                finish(feed, engine, "third", 2);
                while (followed.size() < 3 && System.nanoTime() < deadline) {
                    Thread.sleep(5);
                }
                follow.dispose();
                assertEquals(3, followed.size(), followed.toString());
                assertTrue(followed.get(2).contains("\"requestId\":\"third\""), followed.get(2));
            }
            feed.complete();
            run.dispose();
        }
    }
}
