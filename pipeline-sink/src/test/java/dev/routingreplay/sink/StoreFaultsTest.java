package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Routing;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.publisher.Flux;
import reactor.test.StepVerifier;

class StoreFaultsTest {
    private static final RoutingShape SHAPE = new RoutingShape(2, 2, 64);
    private static final long MARK = 0x1122334455667788L;

    @TempDir
    Path tmp;

    /** Writes request {@code id} (two tokens, slots 0 and 1) with step id {@code stepId} through a pipeline. */
    private static Flux<EngineEvent> writeRequest(ChronicleRoutingSink sink, HostDevice device, HostEngine engine, String id, long stepId) {
        CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(2).maxTokensPerStep(4).build();
        return Flux.just(0, 1, 2).map(i -> i == 0 ? new RequestAdmitted(id)
                        : i == 1 ? engine.step(stepId, new long[] {0, 1}, (t, l, k) -> Routing.id(7, t, l, k, 64))
                        : (EngineEvent) new RequestFinished(id, new int[] {0, 1}))
                .transform(pipeline);
    }

    private void writeOne(Path dir, String id, long stepId) {
        HostDevice device = new HostDevice();
        try (HostEngine engine = new HostEngine(device, SHAPE, 4);
                ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, SHAPE, 16))) {
            writeRequest(sink, device, engine, id, stepId).blockLast(Duration.ofSeconds(10));
        }
    }

    private static List<String> ids(Path dir) {
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            return replay.requests().map(RequestRouting::requestId).collectList().block(Duration.ofSeconds(10));
        }
    }

    @Test
    void aFolderThatCannotBeCreatedIsNamed() throws IOException {
        Path file = Files.writeString(tmp.resolve("plain-file"), "x");
        StoreException e = assertThrows(StoreException.class, () -> ChronicleRoutingSink.open(StoreConfig.of(file.resolve("store"), SHAPE, 8)));
        assertTrue(e.getMessage().startsWith(file.resolve("store") + ": cannot create the store folder"), e.getMessage());
    }

    @Test
    void aReadOnlyFolderIsNamed() throws IOException {
        Assumptions.assumeFalse("root".equals(System.getProperty("user.name")), "root ignores folder permissions");
        Path dir = Files.createDirectories(tmp.resolve("ro"));
        assertTrue(dir.toFile().setWritable(false));
        try {
            StoreException e = assertThrows(StoreException.class, () -> ChronicleRoutingSink.open(StoreConfig.of(dir, SHAPE, 8)));
            assertTrue(e.getMessage().contains(dir.toString()), e.getMessage());
        } finally {
            dir.toFile().setWritable(true);
        }
    }

    @Test
    void aFullDiskFailsCleanlyAndKeepsWhatWasWritten() {
        Path dir = tmp.resolve("store");
        writeOne(dir, "before", 1);
        HostDevice device = new HostDevice();
        try (HostEngine engine = new HostEngine(device, SHAPE, 4);
                ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, SHAPE, 16).withMinFreeBytes(Long.MAX_VALUE / 2))) {
            StepVerifier.create(writeRequest(sink, device, engine, "after", 2))
                    .expectNextCount(1)
                    .expectErrorSatisfies(e -> {
                        StoreException cause = assertInstanceOf(StoreException.class, e.getCause());
                        assertTrue(cause.getMessage().startsWith(dir + ": disk full"), cause.getMessage());
                    })
                    .verify(Duration.ofSeconds(10));
        }
        assertEquals(List.of("before"), ids(dir));
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, SHAPE, 16))) {
            assertEquals(1, sink.recovery().steps(), "the refused step left nothing in the journal");
            assertEquals(Routing.id(7, 1, 1, 1, 64), sink.read(1).id(0, 1, 1));
        }
    }

    @Test
    void aStoreOfAnotherShapeIsRefusedNamingBothShapes() {
        Path dir = tmp.resolve("store");
        writeOne(dir, "r", 1);
        RoutingShape other = new RoutingShape(2, 2, 300);
        StoreException e = assertThrows(StoreException.class, () -> ChronicleRoutingSink.open(StoreConfig.of(dir, other, 16)));
        assertEquals(dir.resolve("store.properties") + ": the store was written with shape " + SHAPE.describe() + ", not "
                + other.describe(), e.getMessage());
        assertEquals(List.of("r"), ids(dir), "the refusal changed nothing");
    }

    @Test
    void aCorruptManifestIsNamed() throws IOException {
        Path dir = tmp.resolve("store");
        writeOne(dir, "r", 1);
        Files.writeString(dir.resolve("store.properties"), "format=" + StoreManifest.FORMAT + "\nmoeLayers=two\n");
        StoreException e = assertThrows(StoreException.class, () -> RoutingReplay.open(dir));
        assertTrue(e.getMessage().startsWith(dir.resolve("store.properties") + ": corrupt store manifest"), e.getMessage());
    }

    private static Path onlyQueueFile(Path queueDir) throws IOException {
        try (Stream<Path> files = Files.list(queueDir)) {
            return files.filter(p -> p.toString().endsWith(".cq4")).findFirst().orElseThrow();
        }
    }

    private static long find(Path file, long value) throws IOException {
        byte[] all = Files.readAllBytes(file);
        for (int i = 0; i + 8 <= all.length; i++) {
            long v = 0;
            for (int b = 7; b >= 0; b--) {
                v = (v << 8) | (all[i + b] & 0xFF);
            }
            if (v == value) {
                return i;
            }
        }
        throw new AssertionError("marker not found in " + file);
    }

    @Test
    void aCorruptJournalRecordIsNamedAndTheRequestsStayReadable() throws IOException {
        Path dir = tmp.resolve("store");
        writeOne(dir, "r", MARK);
        Path journal = onlyQueueFile(dir.resolve("journal"));
        long at = find(journal, MARK);
        try (RandomAccessFile f = new RandomAccessFile(journal.toFile(), "rw")) {
            f.seek(at - 1);
            f.write(0x7F);
        }
        StoreException e = assertThrows(StoreException.class, () -> ChronicleRoutingSink.open(StoreConfig.of(dir, SHAPE, 16)));
        assertTrue(e.getMessage().startsWith(dir.resolve("journal") + ": corrupt journal record at index"), e.getMessage());
        assertTrue(e.getMessage().contains(": checksum 0x"), e.getMessage());
        assertEquals(List.of("r"), ids(dir), "finished requests are still readable");
    }

    @Test
    void aTruncatedJournalIsNamed() throws IOException {
        Path dir = tmp.resolve("store");
        writeOne(dir, "r", MARK);
        Path journal = onlyQueueFile(dir.resolve("journal"));
        long at = find(journal, MARK);
        try (RandomAccessFile f = new RandomAccessFile(journal.toFile(), "rw")) {
            f.setLength(at + 4);
        }
        StoreException e = assertThrows(StoreException.class, () -> ChronicleRoutingSink.open(StoreConfig.of(dir, SHAPE, 16)));
        assertTrue(e.getMessage().startsWith(dir.resolve("journal").toString()), e.getMessage());
    }

    @Test
    void aCorruptRequestRecordIsNamed() throws IOException {
        Path dir = tmp.resolve("store");
        writeOne(dir, "r", 1);
        Path requests = onlyQueueFile(dir.resolve("requests"));
        long at = find(requests, (RecordFormat.REQUEST_MAGIC & 0xFFFFFFFFL) | ((long) RecordFormat.REQUEST_VERSION << 32) | (1L << 40));
        try (RandomAccessFile f = new RandomAccessFile(requests.toFile(), "rw")) {
            f.seek(at);
            f.write(0);
        }
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            StepVerifier.create(replay.requests())
                    .expectErrorSatisfies(e -> assertTrue(e.getMessage().startsWith(dir.resolve("requests") + ": corrupt request record"),
                            e.getMessage()))
                    .verify(Duration.ofSeconds(10));
        }
        StoreException e = assertThrows(StoreException.class, () -> ChronicleRoutingSink.open(StoreConfig.of(dir, SHAPE, 16)));
        assertTrue(e.getMessage().contains("corrupt request record"), e.getMessage());
    }

    /** Runs request "lost" (admit, one step, finish) on a sink whose request-record write throws {@code fault}. */
    private Throwable failRequestWrite(Path dir, Throwable fault) {
        HostDevice device = new HostDevice();
        Throwable[] seen = new Throwable[1];
        try (HostEngine engine = new HostEngine(device, SHAPE, 4); ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, SHAPE, 16))) {
            sink.probe = (queue, kind) -> {
                if (kind == ChronicleRoutingSink.WriteProbe.REQUEST) {
                    if (fault instanceof Error e) {
                        throw e;
                    }
                    throw (RuntimeException) fault;
                }
            };
            StepVerifier.create(writeRequest(sink, device, engine, "lost", 1))
                    .expectNextCount(2) // the admit and the step were acknowledged, the finish never is
                    .expectErrorSatisfies(e -> seen[0] = e)
                    .verify(Duration.ofSeconds(10));
            sink.probe = ChronicleRoutingSink.WriteProbe.NONE;
            if (fault instanceof Error) {
                StoreException refused = assertThrows(StoreException.class, () -> sink.clear(new dev.routingreplay.core.event.RoundCleared(1)));
                assertTrue(refused.getMessage().contains("an earlier write failed fatally"), refused.getMessage());
            }
        }
        return seen[0];
    }

    @Test
    void aFailedRequestRecordWriteFailsThePipelineAndLeavesNoRecord() {
        Path dir = tmp.resolve("store");
        Throwable e = failRequestWrite(dir, new IllegalStateException("injected request write failure"));
        StoreException cause = assertInstanceOf(StoreException.class, e.getCause(), String.valueOf(e));
        assertTrue(cause.getMessage().matches(java.util.regex.Pattern.quote(dir.resolve("requests").toString())
                + "/[0-9F-]+\\.cq4: write failed and was rolled back: injected request write failure"), cause.getMessage());
        assertEquals(List.of(), ids(dir), "no record, not even a partial one");
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, SHAPE, 16))) {
            assertEquals(1, sink.recovery().records(), "the journal holds the step and no FINISH: " + sink.recovery().describe());
        }
        writeOne(dir, "lost", 1); // the engine replays the unacknowledged finish: recorded once
        assertEquals(List.of("lost"), ids(dir));
    }

    @Test
    void anErrorDuringARequestRecordWriteIsFatalAndNothingOfItIsVisible() {
        Path dir = tmp.resolve("store");
        Throwable e = failRequestWrite(dir, new InternalError("a fault occurred in an unsafe memory access operation (injected)"));
        StoreException cause = assertInstanceOf(StoreException.class, e.getCause(), String.valueOf(e));
        assertTrue(cause.getMessage().matches(java.util.regex.Pattern.quote(dir.resolve("requests").toString())
                + "/[0-9F-]+\\.cq4: fatal error during a store write .*"), cause.getMessage());
        assertInstanceOf(InternalError.class, cause.getCause());
        assertEquals(List.of(), ids(dir), "the half-written record was rolled back, not committed");
    }
}
