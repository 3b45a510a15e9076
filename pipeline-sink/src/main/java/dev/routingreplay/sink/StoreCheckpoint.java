package dev.routingreplay.sink;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Properties;

/**
 * {@code checkpoint.properties} at the root of a store: the index of the last journal excerpt and of the last request
 * record the writer had acknowledged when it last wrote the file (once a second while writing, and at open and close;
 * atomically, by rename), and the request files with the records each held ({@link RequestFileLedger}). Opening a store compares the queues' tails with it, so a journal or request file that lost
 * its tail, or was emptied or deleted, is reported (what, from where) instead of read as a shorter valid store.
 *
 * @param journalLastIndex Chronicle index of the last acknowledged journal excerpt, or -1
 * @param requestsLastIndex Chronicle index of the last acknowledged request record, or -1
 * @param requestsLastOrdinal ordinal of the last acknowledged request record, or -1 (also for checkpoints written before
 *     records had ordinals); a reopened writer never gives a new record an ordinal at or below it, even when the
 *     records up to it were lost
 */
public record StoreCheckpoint(long journalLastIndex, long requestsLastIndex, long requestsLastOrdinal) {
    /** The checkpoint file name. */
    public static final String FILE = "checkpoint.properties";
    /** No checkpoint: nothing acknowledged yet, or a store written before checkpoints. */
    public static final StoreCheckpoint NONE = new StoreCheckpoint(-1, -1, -1);
    /** Chronicle writes a header and index arrays well beyond this at the start of every queue file. */
    private static final long MIN_QUEUE_FILE_BYTES = 4096;

    /**
     * Reads the checkpoint of the store at {@code dir}; {@link #NONE} when there is none.
     *
     * @throws StoreException naming the file when it exists but cannot be read or parsed
     */
    public static StoreCheckpoint read(Path dir) {
        Path file = dir.resolve(FILE);
        if (!Files.exists(file)) {
            return NONE;
        }
        try {
            Properties p = PropertiesFile.read(file);
            return new StoreCheckpoint(Long.parseLong(p.getProperty("journal.lastIndex")), Long.parseLong(p.getProperty("requests.lastIndex")),
                    Long.parseLong(p.getProperty("requests.lastOrdinal", "-1")));
        } catch (IOException | RuntimeException e) {
            throw new StoreException(file, "cannot read the store checkpoint", e);
        }
    }

    /**
     * The request files the checkpoint at {@code dir} lists ({@link RequestFileLedger}), empty when there is no
     * checkpoint or it predates the list.
     *
     * @throws StoreException naming the file when it exists but cannot be read or parsed
     */
    static RequestFileLedger files(Path dir, net.openhft.chronicle.queue.RollCycle cycle) {
        Path file = dir.resolve(FILE);
        if (!Files.exists(file)) {
            return new RequestFileLedger(cycle);
        }
        try {
            return RequestFileLedger.read(PropertiesFile.read(file), cycle);
        } catch (IOException | RuntimeException e) {
            throw new StoreException(file, "cannot read the store checkpoint's request files", e);
        }
    }

    /**
     * Writes this checkpoint and the request files of {@code files} into the store at {@code dir} (a temporary file,
     * then a rename).
     *
     * @throws StoreException naming the file when it cannot be written
     */
    void write(Path dir, RequestFileLedger files) {
        Properties p = new Properties();
        files.write(p);
        p.setProperty("journal.lastIndex", Long.toString(journalLastIndex));
        p.setProperty("requests.lastIndex", Long.toString(requestsLastIndex));
        p.setProperty("requests.lastOrdinal", Long.toString(requestsLastOrdinal));
        Path file = dir.resolve(FILE);
        try {
            PropertiesFile.replace(file, p, "R3 routing store: last acknowledged indexes (hex in messages); do not edit");
        } catch (IOException e) {
            throw new StoreException(file, "cannot write the store checkpoint", e);
        }
    }

    /**
     * Checks that no queue file in {@code queue} is shorter than a queue file's header (an emptied or cut file, on
     * which Chronicle would wait for a header or re-create it).
     *
     * @throws StoreException naming the file and its size
     */
    static void checkQueueFiles(Path queue) {
        try (var files = Files.list(queue)) {
            for (Path file : (Iterable<Path>) files.filter(f -> f.toString().endsWith(".cq4")).sorted()::iterator) {
                long size = Files.size(file);
                if (size < MIN_QUEUE_FILE_BYTES) {
                    throw new StoreException(file, "queue file of " + size + " bytes, shorter than its header: emptied or truncated; "
                            + "its records are lost");
                }
            }
        } catch (IOException e) {
            throw new StoreException(queue, "cannot list the queue files", e);
        }
    }

    /**
     * What a queue lost against this checkpoint, or null: {@code lastRead} is the index of the last excerpt found
     * (-1 for none), {@code acknowledged} the checkpoint's.
     */
    static String lost(String what, Path queue, long lastRead, long acknowledged) {
        if (acknowledged < 0 || lastRead >= acknowledged) {
            return null;
        }
        return queue + ": the " + what + " lost records: it ends " + (lastRead < 0 ? "empty" : "at index " + Long.toHexString(lastRead))
                + " but the writer had acknowledged records up to index " + Long.toHexString(acknowledged) + " (truncated, emptied or deleted file?)";
    }
}
