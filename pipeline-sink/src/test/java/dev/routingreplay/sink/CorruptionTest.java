package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.testing.HostEngine;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.publisher.Flux;

/**
 * Corrupt and truncated files never come back as routing: every request record and journal excerpt carries a CRC32C
 * that every reader checks; a corrupt record is reported with its index; a queue that lost its tail against the
 * store's checkpoint is reported on open (the writer) and at the end of a finite replay (readers).
 */
class CorruptionTest {
    private static final int REQUESTS = 40;

    @TempDir
    Path dir;

    private StoreConfig config() {
        return StoreConfig.of(dir, CrashWorkload.SHAPE, CrashWorkload.SLOTS);
    }

    /** Requests 0..REQUESTS-1 of the crash workload (prefix hits, moves, swaps), then a clean close. */
    private void write() {
        HostDevice device = new HostDevice();
        try (HostEngine engine = new HostEngine(device, CrashWorkload.SHAPE, 8); ChronicleRoutingSink sink = ChronicleRoutingSink.open(config())) {
            CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(4).maxTokensPerStep(8).build();
            Flux.range(0, REQUESTS).concatMapIterable(CrashWorkload::ops).map(op -> CrashWorkload.event(op, engine)).transform(pipeline)
                    .blockLast(Duration.ofSeconds(60));
        }
    }

    private static Path cq4(Path queue) throws IOException {
        try (Stream<Path> files = Files.list(queue)) {
            return files.filter(p -> p.toString().endsWith(".cq4")).findFirst().orElseThrow();
        }
    }

    /** One past the last non-zero byte: the part of a (sparse, preallocated) queue file that holds data. */
    private static long used(Path file) throws IOException {
        byte[] all = Files.readAllBytes(file);
        int end = all.length;
        while (end > 0 && all[end - 1] == 0) {
            end--;
        }
        return end;
    }

    /** Where the first record starts: the first occurrence of {@code marker}. */
    private static long start(Path file, byte[] marker) throws IOException {
        byte[] all = Files.readAllBytes(file);
        outer:
        for (int i = 0; i + marker.length <= all.length; i++) {
            for (int j = 0; j < marker.length; j++) {
                if (all[i + j] != marker[j]) {
                    continue outer;
                }
            }
            return i;
        }
        throw new AssertionError("no first record in " + file);
    }

    private static final byte[] REQUEST_START = {0x52, 0x33, 0x52, 0x51, RecordFormat.REQUEST_VERSION};
    /** The journal's first excerpt: STEP of step 0 with 4 tokens. */
    private static final byte[] JOURNAL_START = {RecordFormat.STEP, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0};

    /** Reads every record it can; what it returns must be intact; returns the error that stopped it, or null. */
    private static Throwable readAll(Path dir, List<String> seen) {
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            replay.requests().doOnNext(r -> {
                CrashWorkload.verify(r);
                seen.add(r.requestId());
            }).blockLast(Duration.ofSeconds(20));
            return null;
        } catch (IllegalStateException e) {
            if (e.getMessage() != null && e.getMessage().startsWith("Timeout")) {
                // a read that never ends is a failure of its own: say where every thread was (a CI flake left no trace)
                throw new AssertionError("the replay of " + dir + " did not end within 20 s; threads:\n" + threadDump(), e);
            }
            return e;
        } catch (AssertionError e) {
            throw e;
        } catch (RuntimeException e) {
            return e;
        }
    }

    private static String threadDump() {
        StringBuilder out = new StringBuilder();
        Thread.getAllStackTraces().forEach((thread, stack) -> {
            out.append('"').append(thread.getName()).append("\" ").append(thread.getState()).append('\n');
            for (StackTraceElement frame : stack) {
                out.append("    at ").append(frame).append('\n');
            }
        });
        return out.toString();
    }

    @Test
    void randomByteFlipsInTheRequestFileAreNeverReturnedAsRouting() throws IOException {
        write();
        Path file = cq4(dir.resolve("requests"));
        long first = start(file, REQUEST_START);
        long used = used(file);
        Random random = new Random(42);
        int detected = 0;
        for (int trial = 0; trial < 40; trial++) {
            long at = first + random.nextLong(used - first);
            int flip = 1 << random.nextInt(8);
            byte original = flip(file, at, flip);
            try {
                List<String> seen = new ArrayList<>();
                Throwable e = readAll(dir, seen);
                if (e != null) {
                    detected++;
                    assertTrue(e.getMessage() != null && e.getMessage().contains("requests"), "names the queue: " + e);
                }
            } finally {
                restore(file, at, original);
            }
        }
        assertTrue(detected >= 36, "flips detected: " + detected + " of 40 (the rest hit padding between records)");
        List<String> seen = new ArrayList<>();
        assertEquals(null, readAll(dir, seen));
        assertEquals(REQUESTS, seen.size());
    }

    @Test
    void aFlippedRowByteIsReportedWithTheRecordsIndex() throws IOException {
        write();
        Path file = cq4(dir.resolve("requests"));
        long at = used(file) - RecordFormat.CRC_BYTES - 10; // inside the last record's rows
        flip(file, at, 0x01);
        List<String> seen = new ArrayList<>();
        Throwable e = readAll(dir, seen);
        assertEquals(REQUESTS - 1, seen.size(), "the records before it are read");
        assertTrue(e.getMessage().matches(".*requests: corrupt request record at index [0-9a-f]+: checksum 0x[0-9a-f]+ of its \\d+ bytes, "
                + "stored 0x[0-9a-f]+"), e.getMessage());
    }

    @Test
    void randomByteFlipsInTheJournalNeverRecoverWrongRouting() throws IOException {
        write();
        Path file = cq4(dir.resolve("journal"));
        long first = start(file, JOURNAL_START);
        long used = used(file);
        Random random = new Random(7);
        int detected = 0;
        for (int trial = 0; trial < 25; trial++) {
            long at = first + random.nextLong(used - first);
            byte original = flip(file, at, 1 << random.nextInt(8));
            try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config())) {
                RecoveryReport report = sink.recovery();
                // not detected: then it must have hit bytes no record uses, and recovery is exact
                CrashWorkload.Oracle.recovered(report.round(), report.recordsAfterClear()).check(sink);
                assertEquals(CrashWorkload.Oracle.recordsBefore(REQUESTS), report.records(), report.describe());
            } catch (StoreException e) {
                detected++;
                assertTrue(e.getMessage().startsWith(dir.resolve("journal").toString()), e.getMessage());
            } finally {
                restore(file, at, original);
            }
        }
        assertTrue(detected >= 22, "flips detected: " + detected + " of 25 (the rest hit padding between records)");
    }

    @Test
    void aTruncatedRequestFileIsReportedNeverReadAsZeros() throws IOException {
        write();
        Path file = cq4(dir.resolve("requests"));
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.setLength(used(file) / 2);
        }
        List<String> seen = new ArrayList<>();
        Throwable e = readAll(dir, seen);
        assertTrue(e instanceof StoreException, String.valueOf(e));
        assertTrue(seen.size() < REQUESTS, "seen " + seen.size());
        assertTrue(e.getMessage().startsWith(dir.resolve("requests").toString()), e.getMessage());
    }

    /**
     * A file cut pages before the end of its records is refused on open, before a reader maps a byte past its end:
     * such a read is a SIGBUS, which the JVM reports as an {@code InternalError} at some later point of the reader's
     * thread (it can surface inside Reactor's signalling and leave the replay running forever).
     */
    @Test
    void aRequestFileCutPagesShortIsRefusedBeforeAnyReadPastItsEnd() throws IOException {
        write();
        Path file = cq4(dir.resolve("requests"));
        long cut = used(file) / 2;
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.setLength(cut);
        }
        try {
            RoutingReplay.open(dir).close();
            fail("opened a request file cut pages before its last record");
        } catch (StoreException e) {
            assertTrue(e.getMessage().matches(Pattern.quote(file.toString()) + ": queue file of " + cut + " bytes, cut inside its records "
                    + "\\(its last record ends at byte \\d+\\): truncated; its records from byte " + cut + " on are lost"), e.getMessage());
            for (Throwable t = e; t != null; t = t.getCause()) {
                assertTrue(!(t instanceof InternalError), "a mapped read past the end of the file: " + t);
            }
        }
    }

    @Test
    void anEmptiedOrDeletedRequestFileIsNotAnEmptyValidStore() throws IOException {
        write();
        Path file = cq4(dir.resolve("requests"));
        Files.write(file, new byte[0]);
        Throwable e = readAll(dir, new ArrayList<>());
        assertTrue(e instanceof StoreException && e.getMessage().equals(file + ": queue file of 0 bytes, shorter than its header: emptied or "
                + "truncated; its records are lost"), String.valueOf(e));
        Files.delete(file);
        e = readAll(dir, new ArrayList<>());
        // the checkpoint lists the file (issue 21): the loss names it and its ordinals
        String deleted = file.getFileName() + " is missing: the records of ordinals 0 to " + (REQUESTS - 1);
        assertTrue(e instanceof StoreLossException && e.getMessage().contains(deleted), String.valueOf(e));
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config())) {
            assertEquals(1, sink.recovery().losses().size(), sink.recovery().describe());
            assertTrue(sink.recovery().losses().get(0).startsWith(dir.resolve("requests") + ": " + deleted),
                    sink.recovery().describe());
        }
    }

    @Test
    void aJournalThatLostItsTailSaysSoOnReopen() throws IOException {
        write();
        Path file = cq4(dir.resolve("journal"));
        long used = used(file);
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.setLength(used / 2);
        }
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config())) {
            RecoveryReport report = sink.recovery();
            assertTrue(report.records() < CrashWorkload.Oracle.recordsBefore(REQUESTS), report.describe());
            assertEquals(1, report.losses().size(), report.describe());
            assertTrue(report.losses().get(0).matches(".*journal: the journal lost records: it ends (empty|at index [0-9a-f]+) but the writer had "
                    + "acknowledged records up to index [0-9a-f]+.*"), report.describe());
        } catch (StoreException e) {
            // a cut inside an excerpt or Chronicle's header: the journal is named, the open fails
            assertTrue(e.getMessage().startsWith(dir.resolve("journal") + ": "), e.getMessage());
        }
    }

    @Test
    void aCleanStoreReportsNoLoss() {
        write();
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config())) {
            assertEquals(List.of(), sink.recovery().losses(), sink.recovery().describe());
        }
    }

    private static byte flip(Path file, long at, int mask) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.seek(at);
            byte b = f.readByte();
            f.seek(at);
            f.write(b ^ mask);
            return b;
        }
    }

    private static void restore(Path file, long at, byte original) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.seek(at);
            f.write(original);
        } catch (IOException e) {
            fail(e);
        }
    }
}
