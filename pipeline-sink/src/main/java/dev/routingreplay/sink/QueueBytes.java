package dev.routingreplay.sink;

import java.util.Map;
import java.util.concurrent.ConcurrentSkipListMap;

/**
 * The bytes one queue's files take on disk, by cycle, kept up to date by the writer (no directory walk): a file's
 * bytes are the range {@link Preallocation} allocated in it (its excerpts, and zeros up to
 * {@link Preallocation#AHEAD} beyond the last one), or for a file found at open, from its first
 * excerpt to its last plus that allowance. Queue files are sparse, so this is what {@code du} shows (within the few
 * pages of Chronicle's header), not their length.
 *
 * <p>Threading: changed by the sink thread only; {@link #total} may be read from any thread (a gauge).
 */
final class QueueBytes {
    /** By cycle: {lowest, highest} offset allocated in the file. */
    private final Map<Integer, long[]> files = new ConcurrentSkipListMap<>();
    /** The pages Chronicle writes at a file's start (header, first index arrays), below the first excerpt: measured. */
    static final long HEADER = 3 * 4096;
    private volatile long total;

    /** Records that bytes {@code [start, end)} of the file of {@code cycle} are allocated (and all between). */
    void extend(int cycle, long start, long end) {
        long[] range = files.get(cycle);
        if (range == null) {
            files.put(cycle, new long[] {start, end});
            total += HEADER + end - start;
            return;
        }
        long before = range[1] - range[0];
        range[0] = Math.min(range[0], start);
        range[1] = Math.max(range[1], end);
        total += range[1] - range[0] - before;
    }

    /** Forgets the file of {@code cycle} (deleted); returns the bytes it took. */
    long remove(int cycle) {
        long[] range = files.remove(cycle);
        long bytes = range == null ? 0 : HEADER + range[1] - range[0];
        total -= bytes;
        return bytes;
    }

    /** The bytes of every file of the queue. */
    long total() {
        return total;
    }
}
