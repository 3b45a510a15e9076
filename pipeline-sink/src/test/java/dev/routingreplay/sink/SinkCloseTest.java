package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.testing.HostEngine;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.publisher.Flux;
import reactor.test.StepVerifier;

/** {@link ChronicleRoutingSink#close} from another thread, concurrently with itself and with a running sink call (issue 8 item 2). */
class SinkCloseTest {
    @TempDir
    Path tmp;

    private static StoreConfig config(Path dir) {
        return StoreConfig.of(dir, TestStores.SHAPE, 16);
    }

    private static List<String> ids(Path dir) {
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            return replay.requests().map(RequestRouting::requestId).collectList().block(Duration.ofSeconds(10));
        }
    }

    @Test
    void closeWaitsForARunningWriteAndEveryLaterCallThrowsNamingTheStore() throws Exception {
        Path dir = tmp.resolve("store");
        ChronicleRoutingSink sink = ChronicleRoutingSink.open(config(dir));
        CountDownLatch inWrite = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        sink.probe = (queue, kind) -> {
            if (kind == ChronicleRoutingSink.WriteProbe.REQUEST) {
                inWrite.countDown();
                try {
                    release.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        };
        AtomicReference<Throwable> writeFailed = new AtomicReference<>();
        Thread writer = new Thread(() -> {
            try {
                TestStores.finish(sink, 0, "a");
            } catch (Throwable t) {
                writeFailed.set(t);
            }
        });
        writer.start();
        assertTrue(inWrite.await(10, TimeUnit.SECONDS), "the sink thread is inside the request record write");
        Thread closer = new Thread(sink::close);
        closer.start();
        closer.join(300);
        assertTrue(closer.isAlive(), "close waits while the write runs");
        release.countDown();
        closer.join(10_000);
        writer.join(10_000);
        assertTrue(!closer.isAlive() && !writer.isAlive());
        assertNull(writeFailed.get(), "the running write completed and was acknowledged");
        assertEquals(List.of("a"), ids(dir));

        String closed = "routing store " + dir + " is closed; ";
        List<Executable> calls = List.of(() -> sink.finish(new RequestFinished("b", new int[] {0})), () -> sink.abort(new RequestAborted("b")),
                () -> sink.move(new SlotsMoved(new int[] {0}, new int[] {1})), () -> sink.clear(new RoundCleared(1)), () -> sink.read(0),
                () -> sink.admit(new RequestAdmitted("b")));
        List<String> names = List.of("finish", "abort", "move", "clear", "read", "admit");
        for (int i = 0; i < calls.size(); i++) {
            IllegalStateException e = assertThrows(IllegalStateException.class, calls.get(i));
            assertEquals(closed + names.get(i) + " refused", e.getMessage());
        }
        HostDevice device = new HostDevice();
        try (HostEngine engine = new HostEngine(device, TestStores.SHAPE, 4)) {
            CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(2).maxTokensPerStep(4).build();
            StepVerifier.create(Flux.just(0).map(i -> (EngineEvent) engine.step(1, new long[] {1}, (t, l, k) -> 1 + k)).transform(pipeline))
                    .expectErrorSatisfies(e -> {
                        IllegalStateException cause = assertInstanceOf(IllegalStateException.class, e.getCause(), String.valueOf(e));
                        assertEquals(closed + "scatter refused", cause.getMessage());
                    })
                    .verify(Duration.ofSeconds(10));
        }
        sink.close(); // idempotent
    }

    @Test
    void concurrentClosesDuringARunNeverCrashAndTheRunFailsNamingTheStore() throws Exception {
        int failedRuns = 0;
        for (int round = 0; round < 12; round++) {
            Path dir = tmp.resolve("store-" + round);
            ChronicleRoutingSink sink = ChronicleRoutingSink.open(config(dir));
            String[] ids = new String[12];
            for (int i = 0; i < ids.length; i++) {
                ids[i] = "r" + i;
            }
            AtomicReference<Throwable> runFailed = new AtomicReference<>();
            Thread run = new Thread(() -> {
                try {
                    TestStores.finish(sink, 0, ids);
                } catch (Throwable t) {
                    runFailed.set(t);
                }
            });
            run.start();
            Thread.sleep(round * 3L);
            List<Thread> closers = new ArrayList<>();
            List<Throwable> closeFailed = new ArrayList<>();
            for (int c = 0; c < 3; c++) {
                Thread t = new Thread(() -> {
                    try {
                        sink.close();
                    } catch (Throwable e) {
                        synchronized (closeFailed) {
                            closeFailed.add(e);
                        }
                    }
                });
                closers.add(t);
                t.start();
            }
            for (Thread t : closers) {
                t.join(10_000);
            }
            run.join(30_000);
            assertTrue(closeFailed.isEmpty(), "close threw: " + closeFailed);
            Throwable failed = runFailed.get();
            if (failed != null) {
                failedRuns++;
                Throwable cause = failed;
                while (cause != null && !(cause instanceof IllegalStateException && String.valueOf(cause.getMessage()).startsWith(
                        "routing store " + dir + " is closed; "))) {
                    cause = cause.getCause();
                }
                assertTrue(cause != null, "the run failed because the store was closed, naming it: " + failed);
            }
            // what was acknowledged is stored intact, and the store reopens
            List<String> stored = ids(dir);
            assertTrue(stored.size() <= ids.length, stored.toString());
            try (ChronicleRoutingSink again = ChronicleRoutingSink.open(config(dir))) {
                assertEquals(stored.size(), again.recovery().requestsThisRound());
            }
        }
        assertTrue(failedRuns > 0, "some close landed during a run");
    }
}
