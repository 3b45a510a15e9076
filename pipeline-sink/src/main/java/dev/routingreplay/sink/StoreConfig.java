package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Objects;
import net.openhft.chronicle.queue.RollCycle;
import net.openhft.chronicle.queue.RollCycles;

/**
 * How a {@link ChronicleRoutingSink} stores routing.
 *
 * @param dir the store's folder (created if absent)
 * @param shape routing shape of every row
 * @param slotCapacity KV-cache slots the store holds
 * @param rollCycle how often the queues start a new file
 * @param retainForReaders named readers (see {@link RoutingReplay#fromReader}) that must have consumed a request-queue
 *     cycle before it may be deleted; empty means no reader holds cycles back
 * @param maxAge request-queue cycles that ended longer ago than this are deleted even if unread; null keeps them
 * @param minFreeBytes writes fail with a clear error (instead of a crash on a full disk) when less is free
 */
public record StoreConfig(Path dir, RoutingShape shape, int slotCapacity, RollCycle rollCycle, List<String> retainForReaders,
        Duration maxAge, long minFreeBytes) {

    /** Checks for nulls and ranges. */
    public StoreConfig {
        Objects.requireNonNull(dir, "dir");
        Objects.requireNonNull(shape, "shape");
        Objects.requireNonNull(rollCycle, "rollCycle");
        retainForReaders = List.copyOf(retainForReaders);
        if (slotCapacity < 1) {
            throw new IllegalArgumentException("slotCapacity must be positive, was " + slotCapacity);
        }
        if (minFreeBytes < 0) {
            throw new IllegalArgumentException("minFreeBytes must not be negative, was " + minFreeBytes);
        }
    }

    /** Hourly files, no retention, 256 MiB must stay free. */
    public static StoreConfig of(Path dir, RoutingShape shape, int slotCapacity) {
        return new StoreConfig(dir, shape, slotCapacity, RollCycles.FAST_HOURLY, List.of(), null, 256L << 20);
    }

    /** A copy with another roll cycle. */
    public StoreConfig withRollCycle(RollCycle cycle) {
        return new StoreConfig(dir, shape, slotCapacity, cycle, retainForReaders, maxAge, minFreeBytes);
    }

    /** A copy with a retention policy. */
    public StoreConfig withRetention(List<String> readers, Duration age) {
        return new StoreConfig(dir, shape, slotCapacity, rollCycle, readers, age, minFreeBytes);
    }

    /** A copy with another free-space floor. */
    public StoreConfig withMinFreeBytes(long bytes) {
        return new StoreConfig(dir, shape, slotCapacity, rollCycle, retainForReaders, maxAge, bytes);
    }

    Path journalDir() {
        return dir.resolve("journal");
    }

    Path requestsDir() {
        return dir.resolve("requests");
    }
}
