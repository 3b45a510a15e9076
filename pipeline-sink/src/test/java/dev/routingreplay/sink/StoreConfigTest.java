package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import net.openhft.chronicle.queue.RollCycles;
import org.junit.jupiter.api.Test;

class StoreConfigTest {
    private final RoutingShape shape = new RoutingShape(4, 2, 64);
    private final Path dir = Path.of("store");

    @Test
    void theBuilderStartsFromTheDefaultsAndSetsEachField() {
        assertEquals(StoreConfig.of(dir, shape, 32), StoreConfig.builder(dir, shape, 32).build());
        StoreConfig c = StoreConfig.builder(dir, shape, 32).rollCycle(RollCycles.FAST_DAILY).retainForReaders(List.of("trainer-0"))
                .maxAge(Duration.ofHours(6)).minFreeBytes(1 << 20).maxStepTokens(512).maxRequestTokens(4096)
                .maxRequestBytes(1L << 30).build();
        assertEquals(new StoreConfig(dir, shape, 32, RollCycles.FAST_DAILY, List.of("trainer-0"), Duration.ofHours(6), 1 << 20, 512, 4096,
                1L << 30), c);
    }

    @Test
    void theBuilderChecksRangesNamingTheField() {
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> StoreConfig.builder(dir, shape, 32).maxRequestBytes(0).build());
        assertTrue(e.getMessage().startsWith("maxRequestBytes must be positive"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> StoreConfig.builder(dir, shape, 0).build());
        assertTrue(e.getMessage().startsWith("slotCapacity must be positive"), e.getMessage());
        assertThrows(NullPointerException.class, () -> StoreConfig.builder(dir, shape, 32).rollCycle(null).build());
    }
}
