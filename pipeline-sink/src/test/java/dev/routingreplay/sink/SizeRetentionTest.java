package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.testing.Routing;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Queue;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.stream.Stream;
import net.openhft.chronicle.queue.rollcycles.TestRollCycles;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.Disposable;

/** Retention by size: {@link StoreConfig#maxRequestBytes}, the store's byte gauge and readers while files go. */
class SizeRetentionTest {
    /** Each request file of a test holds a few tiny records and the 4 MiB allocated ahead: about 4.1 MiB. */
    private static final long LIMIT = 10L << 20;
    private static final int PER_SECOND = 20;

    @TempDir
    Path dir;

    private static void nextSecond() throws InterruptedException {
        long ms = System.currentTimeMillis();
        Thread.sleep(1000 - ms % 1000 + 50);
    }

    private static List<Path> cq4(Path queue) throws IOException {
        try (Stream<Path> s = Files.list(queue)) {
            return s.filter(p -> p.toString().endsWith(".cq4")).sorted().toList();
        }
    }

    /** What the files take on disk, as du counts (allocated blocks; the files are sparse). */
    private static long du(List<Path> files) throws Exception {
        List<String> cmd = new ArrayList<>(List.of("du", "-B1", "-c"));
        files.forEach(f -> cmd.add(f.toString()));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String[] lines = new String(p.getInputStream().readAllBytes()).trim().split("\n");
        p.waitFor();
        return Long.parseLong(lines[lines.length - 1].split("\\s+")[0]);
    }

    /**
     * Writes {@code seconds} cycles of {@link #PER_SECOND} requests "q<n>" (request n on slot n), one cycle a second. Starts
     * just after a second begins, so a cycle's records never straddle two files (a first cycle begun late in a second
     * once split across two files under load, and a reader then read past two of them).
     */
    private static int write(ChronicleRoutingSink sink, int first, int seconds, Runnable afterEachCycle) throws InterruptedException {
        nextSecond();
        int n = first;
        for (int s = 0; s < seconds; s++) {
            String[] ids = new String[PER_SECOND];
            for (int i = 0; i < PER_SECOND; i++) {
                ids[i] = "q" + (n + i);
            }
            TestStores.finish(sink, n, ids);
            n += PER_SECOND;
            afterEachCycle.run();
            nextSecond();
        }
        return n;
    }

    /** Checks a replayed request against what {@link TestStores#finish} wrote for it. */
    private static void checkRouting(RequestRouting r) {
        long req = Long.parseLong(r.requestId().substring(1));
        assertEquals(1, r.seqLen(), r.requestId());
        for (int l = 0; l < TestStores.SHAPE.moeLayers(); l++) {
            for (int k = 0; k < TestStores.SHAPE.topK(); k++) {
                assertEquals(Routing.id(req, 0, l, k, 300), r.id(0, l, k), r.requestId() + " layer " + l + " k " + k);
            }
        }
    }

    private StoreConfig config() {
        return StoreConfig.of(dir, TestStores.SHAPE, 4096).withRollCycle(TestRollCycles.TEST_SECONDLY).withMaxRequestBytes(LIMIT);
    }

    @Test
    void aSizeLimitKeepsTheRequestQueueUnderItAndTheGaugeReportsTheBytes() throws Exception {
        SimpleMeterRegistry registry = new SimpleMeterRegistry();
        int written;
        long[] largestFile = {0};
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config(), registry)) {
            written = write(sink, 0, 7, () -> {
                try {
                    List<Path> files = cq4(dir.resolve("requests"));
                    long onDisk = du(files);
                    for (Path f : files) {
                        largestFile[0] = Math.max(largestFile[0], du(List.of(f)));
                    }
                    assertTrue(onDisk <= LIMIT + largestFile[0], onDisk + " bytes in " + files + " over the limit " + LIMIT + " plus a file");
                    double gauge = registry.get("r3.store.bytes").tag("queue", "requests").gauge().value();
                    assertEquals(onDisk, gauge, files.size() * 16 << 10, "the gauge counts what du counts");
                    double journal = registry.get("r3.store.bytes").tag("queue", "journal").gauge().value();
                    List<Path> journalFiles = cq4(dir.resolve("journal"));
                    assertEquals(du(journalFiles), journal, journalFiles.size() * 16 << 10, "journal gauge");
                } catch (Exception e) {
                    throw new AssertionError(e);
                }
            });
            StoreUsage usage = sink.usage();
            assertTrue(usage.deletedBySize() >= 3, usage.describe());
            assertEquals(0, usage.deletedByAge() + usage.deletedByReaders(), usage.describe());
            assertEquals(usage.deletedBySize(), registry.get("r3.store.files.deleted").tag("reason", "size").functionCounter().count());
            assertTrue(cq4(dir.resolve("journal")).size() >= 7, "the journal has no clear: every file is kept for recovery");

            try (RoutingReplay replay = RoutingReplay.open(dir)) {
                List<ReplayedRequest> kept = replay.fromStart().collectList().block(Duration.ofSeconds(10));
                assertEquals(written - usage.recordsDeleted(), kept.size(), usage.describe());
                for (int i = 0; i < kept.size(); i++) {
                    assertEquals("q" + (usage.recordsDeleted() + i), kept.get(i).routing().requestId(), "the newest records are kept, in order");
                    checkRouting(kept.get(i).routing());
                }
            }
        }
        assertTrue(registry.find("r3.store.bytes").meters().isEmpty(), "close removes the meters");
        try (ChronicleRoutingSink reopened = ChronicleRoutingSink.open(config())) {
            List<Path> files = cq4(dir.resolve("requests"));
            assertEquals(du(files), reopened.usage().requestBytes(), files.size() * 16 << 10, "reopening estimates the bytes from the queue");
        }
    }

    @Test
    void aNamedReaderThatLagsProtectsItsFilesOverTheSizeLimit() throws Exception {
        StoreConfig config = config().withRetention(List.of("trainer"), null);
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config); RoutingReplay replay = RoutingReplay.open(dir)) {
            int written = write(sink, 0, 2, () -> { });
            // the trainer takes the first cycle's records and one of the second: it read past the first file only
            List<ReplayedRequest> taken = replay.fromReader("trainer", false).take(PER_SECOND + 1).collectList()
                    .block(Duration.ofSeconds(10));
            assertEquals(PER_SECOND + 1, taken.size());
            written = write(sink, written, 4, () -> { });
            StoreUsage usage = sink.usage();
            assertEquals(1, usage.deletedByReaders(), "the file the trainer read past went: " + usage.describe());
            assertEquals(0, usage.deletedBySize(), "the size limit never deletes what the trainer has not read: " + usage.describe());
            assertTrue(usage.requestBytes() > LIMIT, "the store stays over its limit while the reader lags: " + usage.describe());
            List<ReplayedRequest> rest = replay.fromReader("trainer", false).collectList().block(Duration.ofSeconds(10));
            assertEquals("q" + (PER_SECOND + 1), rest.get(0).routing().requestId(), "nothing the trainer had not read was deleted");
            assertEquals(written - PER_SECOND - 1, rest.size());
            rest.forEach(r -> checkRouting(r.routing()));
            write(sink, written, 1, () -> { });
            usage = sink.usage();
            assertTrue(usage.requestBytes() <= LIMIT + (5L << 20), "once the trainer read on, the store is back under its limit: "
                    + usage.describe());
        }
    }

    @Test
    void readersWhileFilesAreDeletedNeverFailOrReturnWrongRouting() throws Exception {
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config()); RoutingReplay replay = RoutingReplay.open(dir)) {
            Queue<ReplayedRequest> live = new ConcurrentLinkedQueue<>();
            AtomicReference<Throwable> liveError = new AtomicReference<>();
            Disposable follower = replay.fromStartThenLive().subscribe(live::add, liveError::set);
            AtomicInteger replays = new AtomicInteger();
            List<Throwable> replayErrors = new ArrayList<>();
            int written = write(sink, 0, 6, () -> {
                // a finite replay from the start in every cycle, while the sink deletes the oldest files
                try {
                    List<ReplayedRequest> all = replay.fromStart().collectList().block(Duration.ofSeconds(10));
                    all.forEach(r -> checkRouting(r.routing()));
                    replays.incrementAndGet();
                } catch (RuntimeException e) {
                    replayErrors.add(e);
                }
            });
            long deadline = System.nanoTime() + 5_000_000_000L;
            while (live.size() < written && System.nanoTime() < deadline && liveError.get() == null) {
                Thread.sleep(10);
            }
            follower.dispose();
            if (liveError.get() != null) {
                fail("the live reader failed", liveError.get());
            }
            assertEquals(List.of(), replayErrors);
            assertTrue(sink.usage().deletedBySize() >= 2, sink.usage().describe());
            // the follower read each record before its file went: it saw all of them, in order, with correct routing
            assertEquals(written, live.size());
            int i = 0;
            for (ReplayedRequest r : live) {
                assertEquals("q" + i++, r.routing().requestId());
                checkRouting(r.routing());
            }
            long pruned = live.peek().index();
            StoreException e = org.junit.jupiter.api.Assertions.assertThrows(StoreException.class,
                    () -> replay.after(pruned).collectList().block(Duration.ofSeconds(10)));
            assertTrue(e.getMessage().contains("deleted by retention, or never written"), e.getMessage());
            assertEquals("q" + sink.usage().recordsDeleted(),
                    replay.fromStart().blockFirst(Duration.ofSeconds(10)).routing().requestId(), "fromStart starts at the first record kept");
        }
    }
}
