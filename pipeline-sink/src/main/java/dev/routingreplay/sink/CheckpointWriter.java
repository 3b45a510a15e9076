package dev.routingreplay.sink;

import java.nio.file.Path;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writes the store's {@link StoreCheckpoint} (the indexes of the last excerpts the sink committed or recovered): at
 * open, at most once a second while the sink writes, and at close.
 *
 * <p>The once-a-second write is advisory: the checkpoint only lets a reopen report a lost tail, and an older one
 * reports less, never wrong data. So a failed periodic write (a disk that just filled) is a warning, not a failure of
 * the sink call that triggered it, which has already committed; the next store write meets the full disk through its
 * own space reservation and fails with the disk-full error.
 *
 * <p>Threading: the sink thread; the opening and the closing thread while no sink call runs.
 */
final class CheckpointWriter {
    private static final long CHECKPOINT_NANOS = 1_000_000_000L;
    private static final Logger LOG = LoggerFactory.getLogger(ChronicleRoutingSink.class);

    private final Path dir;
    private final JournalWriter journal;
    private final RequestWriter requests;
    private final RequestFileLedger files;
    private boolean incomplete;
    private long lastNanos;

    CheckpointWriter(Path dir, JournalWriter journal, RequestWriter requests, RequestFileLedger files) {
        this.dir = dir;
        this.journal = journal;
        this.requests = requests;
        this.files = files;
        this.incomplete = IncompleteMark.present(dir);
    }

    /**
     * Writes the checkpoint now; once the store holds a record, also takes the {@link IncompleteMark} off a store whose
     * first writer had not yet committed one.
     */
    void write() {
        new StoreCheckpoint(journal.lastIndex(), requests.lastIndex(), requests.lastOrdinal()).write(dir, files);
        lastNanos = System.nanoTime();
        if (incomplete && requests.lastIndex() >= 0) {
            completed();
        }
    }

    /** The store is complete: a run into it completed, or it holds a record. Takes the {@link IncompleteMark} off. */
    void completed() {
        if (incomplete) {
            IncompleteMark.clear(dir);
            incomplete = false;
        }
    }

    /** Writes the checkpoint when a second passed since the last one; returns whether it wrote. */
    boolean writeIfDue() {
        if (System.nanoTime() - lastNanos >= CHECKPOINT_NANOS) {
            try {
                write();
            } catch (StoreException e) {
                lastNanos = System.nanoTime(); // try again in a second, not on every call
                LOG.warn(e.getMessage() + " (the previous checkpoint stays; retrying in a second)");
                return false;
            }
            return true;
        }
        return false;
    }
}
