package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 21 case 7: a request file deleted by anyone but retention is reported by every finite replay, naming the file
 * and the ordinals it held, after the records still stored; retention's own deletions are not losses.
 */
@Timeout(120)
class StoreLossTest {
    @TempDir
    Path dir;

    /** Reads every record from the start; the error it ends with, or null. */
    private static Throwable readAll(Path dir, List<String> ids) {
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            replay.fromStart().doOnNext(r -> ids.add(r.routing().requestId())).then().block(Duration.ofSeconds(30));
            return null;
        } catch (StoreException e) {
            return e;
        }
    }

    @Test
    void aDeletedMiddleFileIsReportedByNameAndOrdinalsAfterTheRecordsStillStored() throws Exception {
        StoreFiles.write(dir, 3);
        List<Path> files = StoreFiles.requestFiles(dir);
        assertEquals(3, files.size(), files.toString());
        Files.delete(files.get(1));
        List<String> ids = new ArrayList<>();
        Throwable e = readAll(dir, ids);
        assertEquals(List.of("r0", "r1", "r4", "r5"), ids);
        assertTrue(e != null && e.getMessage().contains(files.get(1).getFileName().toString())
                && e.getMessage().contains("ordinals 2 to 3"), String.valueOf(e));
    }

    @Test
    void aDeletedOldestFileIsReportedByNameAndOrdinals() throws Exception {
        StoreFiles.write(dir, 3);
        List<Path> files = StoreFiles.requestFiles(dir);
        Files.delete(files.get(0));
        List<String> ids = new ArrayList<>();
        Throwable e = readAll(dir, ids);
        assertTrue(e != null && e.getMessage().contains(files.get(0).getFileName().toString())
                && e.getMessage().contains("ordinals 0 to 1"), String.valueOf(e));
        assertEquals(List.of("r2", "r3", "r4", "r5"), ids, "the records of the other files are still read");
    }

    @Test
    void aReplayAfterTheLossStillCompletes() throws Exception {
        StoreFiles.write(dir, 3);
        List<Path> files = StoreFiles.requestFiles(dir);
        Files.delete(files.get(0));
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            long r3 = replay.fromStart().onErrorResume(x -> reactor.core.publisher.Flux.empty())
                    .filter(r -> r.routing().requestId().equals("r3")).blockFirst(Duration.ofSeconds(30)).index();
            assertEquals(List.of("r4", "r5"), replay.after(r3).map(r -> r.routing().requestId()).collectList().block(Duration.ofSeconds(30)),
                    "a loss before the replay's start is not its loss");
        }
    }

    @Test
    void theWriterReportsAMissingFileOnOpen() throws Exception {
        StoreConfig config = StoreFiles.write(dir, 3);
        Path middle = StoreFiles.requestFiles(dir).get(1);
        Files.delete(middle);
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config)) {
            String losses = String.join("; ", sink.recovery().losses());
            assertTrue(losses.contains(middle.getFileName().toString()) && losses.contains("ordinals 2 to 3"), losses);
        }
        // and readers still see it after the writer rewrote the checkpoint
        Throwable e = readAll(dir, new ArrayList<>());
        assertTrue(e != null && e.getMessage().contains(middle.getFileName().toString()), String.valueOf(e));
        assertThrows(StoreException.class, () -> {
            throw e;
        });
    }
}
