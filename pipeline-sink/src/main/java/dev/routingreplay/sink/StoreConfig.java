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
 * @param maxStepTokens the most tokens one capture step may have (sizes the journal's blocks)
 * @param maxRequestTokens the longest request the store records (sizes the request queue's blocks: a Chronicle
 *     excerpt may take at most a quarter of a block)
 * @param maxRequestBytes the most bytes the request queue's files may take: when they take more, the oldest finished
 *     files (never the one being written) are deleted until they fit. A named reader of {@code retainForReaders}
 *     wins over this limit: a file it has not read past is kept, and the store stays over the limit (with a warning
 *     naming the reader) until it reads on; {@code maxAge} deletes regardless. {@link #HALF_OF_FREE_SPACE} (the
 *     default) resolves at open to half of the disk's usable space plus what the request queue holds already;
 *     {@link Long#MAX_VALUE} keeps every file
 */
public record StoreConfig(Path dir, RoutingShape shape, int slotCapacity, RollCycle rollCycle, List<String> retainForReaders,
        Duration maxAge, long minFreeBytes, int maxStepTokens, int maxRequestTokens, long maxRequestBytes) {

    /**
     * The default {@link #maxRequestBytes}: half of what the request queue could take when the store opens (usable
     * space of the store's disk plus the request files already there). It adapts to the disk (a fixed limit is
     * either too small for a large volume or fills a small one), and leaves the other half for the journal, the file
     * being written and other processes.
     */
    public static final long HALF_OF_FREE_SPACE = -1;

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
        if (maxStepTokens < 1 || maxRequestTokens < 1) {
            throw new IllegalArgumentException("maxStepTokens and maxRequestTokens must be positive, were " + maxStepTokens + " and "
                    + maxRequestTokens);
        }
        if (maxRequestBytes < 1 && maxRequestBytes != HALF_OF_FREE_SPACE) {
            throw new IllegalArgumentException("maxRequestBytes must be positive (or HALF_OF_FREE_SPACE), was " + maxRequestBytes);
        }
        if (blockSizeFor((long) maxRequestTokens * shape.rowBytes()) > (1L << 40)) {
            throw new IllegalArgumentException("maxRequestTokens=" + maxRequestTokens + " of " + shape.describe() + " is too large");
        }
    }

    /** A Chronicle block size that holds one excerpt of {@code recordBytes}: a power of two, at least 64 MiB. */
    static long blockSizeFor(long recordBytes) {
        long needed = 4 * (recordBytes + 65536);
        long block = 64L << 20;
        while (block < needed) {
            block <<= 1;
        }
        return block;
    }

    long journalBlockSize() {
        return blockSizeFor(13L + (long) maxStepTokens * (4 + shape.rowBytes()));
    }

    long requestBlockSize() {
        return blockSizeFor((long) maxRequestTokens * shape.rowBytes());
    }

    /**
     * Hourly files, no reader or age retention, request files limited to half the free space at open
     * ({@link #HALF_OF_FREE_SPACE}), 256 MiB must stay free, steps up to 16k tokens, requests up to 128k tokens.
     */
    public static StoreConfig of(Path dir, RoutingShape shape, int slotCapacity) {
        return builder(dir, shape, slotCapacity).build();
    }

    /**
     * A builder for a store at {@code dir} of {@code shape}'s rows and {@code slotCapacity} slots, starting from the
     * defaults of {@link #of}; each setter names what it sets, {@link Builder#build()} checks every range.
     */
    public static Builder builder(Path dir, RoutingShape shape, int slotCapacity) {
        return new Builder(dir, shape, slotCapacity);
    }

    /** Builds a {@link StoreConfig}, as Chronicle's own queue builder does; not thread-safe. */
    public static final class Builder {
        private final Path dir;
        private final RoutingShape shape;
        private final int slotCapacity;
        private RollCycle rollCycle = RollCycles.FAST_HOURLY;
        private List<String> retainForReaders = List.of();
        private Duration maxAge;
        private long minFreeBytes = 256L << 20;
        private int maxStepTokens = 16384;
        private int maxRequestTokens = 131072;
        private long maxRequestBytes = HALF_OF_FREE_SPACE;

        private Builder(Path dir, RoutingShape shape, int slotCapacity) {
            this.dir = dir;
            this.shape = shape;
            this.slotCapacity = slotCapacity;
        }

        /** How often the queues start a new file (default hourly). */
        public Builder rollCycle(RollCycle cycle) {
            this.rollCycle = cycle;
            return this;
        }

        /** Named readers that must have read a request file before retention deletes it (default none). */
        public Builder retainForReaders(List<String> readers) {
            this.retainForReaders = readers;
            return this;
        }

        /** Request files that ended longer ago than {@code age} are deleted even if unread (default: never by age). */
        public Builder maxAge(Duration age) {
            this.maxAge = age;
            return this;
        }

        /** Writes fail with a clear error when less than this is free on the store's disk (default 256 MiB). */
        public Builder minFreeBytes(long bytes) {
            this.minFreeBytes = bytes;
            return this;
        }

        /** The most tokens of one capture step (default 16384). */
        public Builder maxStepTokens(int tokens) {
            this.maxStepTokens = tokens;
            return this;
        }

        /** The longest request the store records (default 131072 tokens). */
        public Builder maxRequestTokens(int tokens) {
            this.maxRequestTokens = tokens;
            return this;
        }

        /** The most bytes of request files (default {@link #HALF_OF_FREE_SPACE}; {@link Long#MAX_VALUE} keeps all). */
        public Builder maxRequestBytes(long bytes) {
            this.maxRequestBytes = bytes;
            return this;
        }

        /**
         * The configuration.
         *
         * @throws IllegalArgumentException naming the field whose value is out of range
         * @throws NullPointerException naming a missing dir, shape or roll cycle
         */
        public StoreConfig build() {
            return new StoreConfig(dir, shape, slotCapacity, rollCycle, retainForReaders, maxAge, minFreeBytes, maxStepTokens,
                    maxRequestTokens, maxRequestBytes);
        }
    }

    /** A copy with other size limits. */
    public StoreConfig withLimits(int stepTokens, int requestTokens) {
        return new StoreConfig(dir, shape, slotCapacity, rollCycle, retainForReaders, maxAge, minFreeBytes, stepTokens, requestTokens, maxRequestBytes);
    }

    /** A copy with another roll cycle. */
    public StoreConfig withRollCycle(RollCycle cycle) {
        return new StoreConfig(dir, shape, slotCapacity, cycle, retainForReaders, maxAge, minFreeBytes, maxStepTokens, maxRequestTokens, maxRequestBytes);
    }

    /** A copy with a retention policy. */
    public StoreConfig withRetention(List<String> readers, Duration age) {
        return new StoreConfig(dir, shape, slotCapacity, rollCycle, readers, age, minFreeBytes, maxStepTokens, maxRequestTokens, maxRequestBytes);
    }

    /** A copy with another free-space floor. */
    public StoreConfig withMinFreeBytes(long bytes) {
        return new StoreConfig(dir, shape, slotCapacity, rollCycle, retainForReaders, maxAge, bytes, maxStepTokens, maxRequestTokens, maxRequestBytes);
    }

    /**
     * A copy that keeps at most {@code bytes} of request files (see {@link #maxRequestBytes}): {@link Long#MAX_VALUE}
     * for no size limit, {@link #HALF_OF_FREE_SPACE} for the default.
     */
    public StoreConfig withMaxRequestBytes(long bytes) {
        return new StoreConfig(dir, shape, slotCapacity, rollCycle, retainForReaders, maxAge, minFreeBytes, maxStepTokens, maxRequestTokens,
                bytes);
    }

    Path journalDir() {
        return dir.resolve("journal");
    }

    Path requestsDir() {
        return dir.resolve("requests");
    }
}
