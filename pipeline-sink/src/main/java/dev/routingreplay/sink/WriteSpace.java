package dev.routingreplay.sink;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Whether the store may write: the free-space guard (the free space is checked every {@link #SPACE_CHECK_BYTES}
 * written; below {@link StoreConfig#minFreeBytes()} a write fails before any byte), the {@link Preallocation} of each
 * queue, and the latch that refuses every write after a fatal one (an {@link Error} inside a mapped write).
 *
 * <p>Threading: the sink thread only; {@link #broken()} and {@link #close()} from the thread that closes the sink,
 * after the sink thread's running call finished.
 */
final class WriteSpace implements AutoCloseable {
    private static final long SPACE_CHECK_BYTES = 16L << 20;

    private final StoreConfig config;
    private final Preallocation journal;
    private final Preallocation requests;
    private long bytesSinceSpaceCheck = SPACE_CHECK_BYTES;
    private StoreException broken;

    WriteSpace(StoreConfig config, QueueBytes journalBytes, QueueBytes requestBytes) {
        this.config = config;
        this.journal = new Preallocation(config.journalDir(), journalBytes);
        this.requests = new Preallocation(config.requestsDir(), requestBytes);
    }

    /** The journal's preallocation. */
    Preallocation journal() {
        return journal;
    }

    /** The request queue's preallocation. */
    Preallocation requests() {
        return requests;
    }

    /** The fatal write failure that broke the store, or null. */
    StoreException broken() {
        return broken;
    }

    /** @throws StoreException when an earlier write failed fatally */
    void checkNotBroken() {
        if (broken != null) {
            throw new StoreException(config.dir(), "an earlier write failed fatally; the store refuses writes until reopened", broken);
        }
    }

    /**
     * Counts {@code bytes} about to be written, and checks the free space when {@link #SPACE_CHECK_BYTES} were
     * written since the last check.
     *
     * @throws StoreException naming the store when the free space is below {@link StoreConfig#minFreeBytes()}
     */
    void reserve(long bytes) {
        bytesSinceSpaceCheck += bytes;
        if (bytesSinceSpaceCheck >= SPACE_CHECK_BYTES) {
            checkSpace();
            bytesSinceSpaceCheck = 0;
        }
    }

    private void checkSpace() {
        long usable;
        try {
            usable = Files.getFileStore(config.dir()).getUsableSpace();
        } catch (IOException e) {
            throw new StoreException(config.dir(), "cannot tell the free space", e);
        }
        if (usable < config.minFreeBytes()) {
            throw new StoreException(config.dir(), "disk full: " + usable + " bytes usable, the store keeps at least "
                    + config.minFreeBytes() + " free (minFreeBytes); nothing was written");
        }
    }

    /**
     * A write failed inside its document context (rolled back by the caller). An {@link Error} (a SIGBUS on a mapped
     * file that lost its backing store surfaces as {@code InternalError}) leaves the mapped file in doubt: the sink
     * refuses every later write, so nothing after it is acknowledged. The message names the queue file written.
     */
    StoreException failed(Preallocation space, Throwable e) {
        Path path = space.path();
        if (e instanceof StoreException s && s.getMessage().contains(": disk full: ")) {
            return s;
        }
        if (e instanceof Error) {
            broken = new StoreException(path, "fatal error during a store write (a SIGBUS here means the file's disk or tmpfs filled up "
                    + "or the file was cut); the store refuses further writes until reopened", e);
            return broken;
        }
        return new StoreException(path, "write failed and was rolled back", e);
    }

    @Override
    public void close() {
        journal.close();
        requests.close();
    }
}
