package dev.routingreplay.sink;

import java.nio.file.Path;

/**
 * Writes the store's {@link StoreCheckpoint} (the indexes of the last excerpts the sink committed or recovered): at
 * open, at most once a second while the sink writes, and at close.
 *
 * <p>Threading: the sink thread; the opening and the closing thread while no sink call runs.
 */
final class CheckpointWriter {
    private static final long CHECKPOINT_NANOS = 1_000_000_000L;

    private final Path dir;
    private final JournalWriter journal;
    private final RequestWriter requests;
    private long lastNanos;

    CheckpointWriter(Path dir, JournalWriter journal, RequestWriter requests) {
        this.dir = dir;
        this.journal = journal;
        this.requests = requests;
    }

    /** Writes the checkpoint now. */
    void write() {
        new StoreCheckpoint(journal.lastIndex(), requests.lastIndex()).write(dir);
        lastNanos = System.nanoTime();
    }

    /** Writes the checkpoint when a second passed since the last one; returns whether it wrote. */
    boolean writeIfDue() {
        if (System.nanoTime() - lastNanos >= CHECKPOINT_NANOS) {
            write();
            return true;
        }
        return false;
    }
}
