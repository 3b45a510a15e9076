package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.pipeline.EngineFeed;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Routing;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.Disposable;
import reactor.test.StepVerifier;

class ReplayApiTest {
    private static final RoutingShape SHAPE = new RoutingShape(2, 2, 64);

    @TempDir
    Path dir;

    private static void finish(EngineFeed feed, HostEngine engine, int r) {
        feed.emit(new RequestAdmitted("r" + r));
        feed.emit(engine.step(r, new long[] {r % 32}, (t, l, k) -> Routing.id(r, t, l, k, 64)));
        feed.emit(new RequestFinished("r" + r, new int[] {r % 32}));
    }

    private static void awaitCount(List<?> list, int n) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (list.size() < n && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
        assertEquals(n, list.size(), list.toString());
    }

    @Test
    void liveSeesOnlyNewRecordsAfterResumesAndAtReadsOne() throws Exception {
        HostDevice device = new HostDevice();
        EngineFeed feed = new EngineFeed();
        try (HostEngine engine = new HostEngine(device, SHAPE, 2);
                ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, SHAPE, 32).withMinFreeBytes(0));
                RoutingReplay replay = RoutingReplay.open(dir)) {
            CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(2).maxTokensPerStep(2).build();
            List<EngineEvent> acked = new CopyOnWriteArrayList<>();
            Disposable run = feed.flux().transform(pipeline).subscribe(acked::add);
            finish(feed, engine, 0);
            finish(feed, engine, 1);
            awaitCount(acked, 6);

            List<String> live = new CopyOnWriteArrayList<>();
            Disposable tail = replay.live().subscribe(r -> live.add(r.routing().requestId()));
            Thread.sleep(100);
            finish(feed, engine, 2);
            awaitCount(live, 1);
            assertEquals(List.of("r2"), live, "live starts at the end: old records are not replayed");
            tail.dispose();

            List<ReplayedRequest> all = replay.fromStart().collectList().block(Duration.ofSeconds(10));
            assertEquals(3, all.size());
            StepVerifier.create(replay.after(all.get(0).index()).map(r -> r.routing().requestId()))
                    .expectNext("r1", "r2").verifyComplete();
            ReplayedRequest second = replay.at(all.get(1).index()).block(Duration.ofSeconds(10));
            assertEquals("r1", second.routing().requestId());
            assertEquals(Routing.id(1, 0, 1, 1, 64), second.routing().id(0, 1, 1));
            StepVerifier.create(replay.at(all.get(2).index() + 1000))
                    .expectErrorSatisfies(e -> assertTrue(e instanceof StoreException && e.getMessage().contains("no record at index"),
                            e.toString()))
                    .verify(Duration.ofSeconds(10));
            // demand is honoured: one request at a time
            StepVerifier.create(replay.fromStart(), 1).expectNextCount(1).thenRequest(2).expectNextCount(2).expectComplete()
                    .verify(Duration.ofSeconds(10));
            StepVerifier.create(replay.fromStart().map(r -> r.routing().requestId()), 0).thenRequest(3)
                    .expectNext("r0", "r1", "r2").expectComplete().verify(Duration.ofSeconds(10));
            feed.complete();
            run.dispose();
        }
    }

    @Test
    void twoHundredLiveFollowersShareABoundedSetOfReaderThreadsAndEachSeesANewRecord() throws Exception {
        HostDevice device = new HostDevice();
        EngineFeed feed = new EngineFeed();
        try (HostEngine engine = new HostEngine(device, SHAPE, 2);
                ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, SHAPE, 32).withMinFreeBytes(0));
                RoutingReplay replay = RoutingReplay.open(dir)) {
            CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(2).maxTokensPerStep(2).build();
            Disposable run = feed.flux().transform(pipeline).subscribe();
            int followers = 200;
            List<String> seen = new CopyOnWriteArrayList<>();
            List<Disposable> tails = new java.util.ArrayList<>();
            for (int i = 0; i < followers; i++) {
                tails.add(replay.live().subscribe(r -> seen.add(r.routing().requestId())));
            }
            Thread.sleep(200);
            long readerThreads = Thread.getAllStackTraces().keySet().stream().filter(t -> t.getName().startsWith("r3-replay")).count();
            assertTrue(readerThreads <= Math.max(2, Runtime.getRuntime().availableProcessors()),
                    "reader threads: " + readerThreads + " for " + followers + " followers");
            finish(feed, engine, 7);
            awaitCount(seen, followers);
            assertTrue(seen.stream().allMatch("r7"::equals), seen.toString());
            tails.forEach(Disposable::dispose);
            feed.complete();
            run.dispose();
        }
    }
}
