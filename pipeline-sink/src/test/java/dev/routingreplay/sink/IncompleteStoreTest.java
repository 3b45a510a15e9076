package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Optional;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.publisher.Flux;

/**
 * Issue 21 case 11: a store whose first writer failed before it committed a record or completed a run is marked
 * incomplete; one that recorded something, or whose run completed (even with no request), is not.
 */
@Timeout(120)
class IncompleteStoreTest {
    @TempDir
    Path dir;

    private StoreConfig config() {
        return StoreConfig.of(dir, TestStores.SHAPE, 64).withMinFreeBytes(0);
    }

    @Test
    void aWriterClosedBeforeItsRunStartedLeavesAnIncompleteStore() {
        // as when the ring cannot be allocated after the store was opened
        ChronicleRoutingSink.open(config()).close();
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            Optional<String> incomplete = replay.incomplete();
            assertTrue(incomplete.isPresent() && incomplete.get().contains("incomplete"), String.valueOf(incomplete));
        }
    }

    @Test
    void anOpenThatFailsAfterCreatingTheQueuesLeavesAnIncompleteStore() throws Exception {
        // as a disk that fills while the store is created: the checkpoint cannot be written
        Files.createDirectories(dir.resolve(StoreCheckpoint.FILE + ".tmp"));
        assertThrows(StoreException.class, () -> ChronicleRoutingSink.open(config()));
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            assertTrue(replay.incomplete().isPresent());
        }
    }

    @Test
    void aStoreWithRecordsOrACompletedRunIsNotIncomplete() throws Exception {
        TestStores.write(config(), "a");
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            assertEquals(Optional.empty(), replay.incomplete());
        }
        Path empty = dir.resolve("empty");
        HostDevice device = new HostDevice();
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(empty, TestStores.SHAPE, 64).withMinFreeBytes(0))) {
            CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(2).maxTokensPerStep(4).build();
            Flux.<dev.routingreplay.core.event.EngineEvent>empty().transform(pipeline).blockLast(Duration.ofSeconds(30));
        }
        try (RoutingReplay replay = RoutingReplay.open(empty)) {
            assertEquals(Optional.empty(), replay.incomplete(), "a completed run of no request is complete");
        }
    }
}
