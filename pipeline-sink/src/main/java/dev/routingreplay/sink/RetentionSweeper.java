package dev.routingreplay.sink;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.util.Map;
import java.util.concurrent.ConcurrentSkipListMap;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueue;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Deletes queue files the store no longer needs: finished request-queue files that every named reader read past,
 * that are older than {@link StoreConfig#maxAge()}, or that keep the request queue over its size limit (named readers
 * win over the size limit); and journal files before the cycle of the last clear. Counts what it deleted, by reason
 * and in request records.
 *
 * <p>Threading: the sink thread sweeps and records; the counters and {@link #maxRequestBytes()} may be read from
 * any thread.
 */
final class RetentionSweeper {
    private static final Logger LOG = LoggerFactory.getLogger(ChronicleRoutingSink.class);

    private final StoreConfig config;
    private final SingleChronicleQueue journal;
    private final SingleChronicleQueue requests;
    private final Map<Integer, File> journalFiles;
    private final Map<Integer, File> requestFiles;
    private final QueueBytes journalBytes;
    private final QueueBytes requestBytes;
    private final RequestFileLedger files;
    /** Set once the sink is open: the writer whose records {@link #recorded} adds to the ledger, and the checkpoint. */
    private RequestWriter writer;
    private Runnable checkpoint;
    /** Request records by cycle, so that retention can count what it deleted. */
    private final Map<Integer, Long> recordsPerCycle = new ConcurrentSkipListMap<>();
    private volatile long maxRequestBytes;
    private volatile long deletedByAge;
    private volatile long deletedBySize;
    private volatile long deletedByReaders;
    private volatile long recordsDeleted;
    /** The reader and file of the last "held back by a reader" warning, so that it is logged once per file. */
    private String heldBackWarned;
    private int lastSweptCycle = Integer.MIN_VALUE;

    RetentionSweeper(StoreConfig config, SingleChronicleQueue journal, SingleChronicleQueue requests, Map<Integer, File> journalFiles,
            Map<Integer, File> requestFiles, QueueBytes journalBytes, QueueBytes requestBytes, RequestFileLedger files) {
        this.config = config;
        this.journal = journal;
        this.requests = requests;
        this.journalFiles = journalFiles;
        this.requestFiles = requestFiles;
        this.journalBytes = journalBytes;
        this.requestBytes = requestBytes;
        this.files = files;
    }

    /**
     * From now on, each {@link #recorded} record is {@code writer}'s last one and goes into the ledger, and a file is
     * retired from the ledger and {@code checkpoint} written before it is deleted.
     */
    void follow(RequestWriter writer, Runnable checkpoint) {
        this.writer = writer;
        this.checkpoint = checkpoint;
    }

    /** The request files and their records (the checkpoint writes them). */
    RequestFileLedger files() {
        return files;
    }

    /** Counts one request record in the request-queue file of {@code cycle} (and, once following, adds it to the ledger). */
    void recorded(int cycle) {
        recordsPerCycle.merge(cycle, 1L, Long::sum);
        if (writer != null) {
            files.recorded(writer.lastIndex(), writer.lastOrdinal());
        }
    }

    /**
     * Sets the request queue's size limit: the configured one, or half of what it could take now (call once the
     * request queue's files were counted).
     */
    void resolveLimit() {
        if (config.maxRequestBytes() != StoreConfig.HALF_OF_FREE_SPACE) {
            maxRequestBytes = config.maxRequestBytes();
            return;
        }
        long usable;
        try {
            usable = Files.getFileStore(config.dir()).getUsableSpace();
        } catch (IOException e) {
            throw new StoreException(config.dir(), "cannot tell the free space (for the request queue's default size limit)", e);
        }
        long limit = Math.max(1, (usable + requestBytes.total()) / 2);
        LOG.debug("{}: request files limited to {} bytes (half of the free space at open; StoreConfig.withMaxRequestBytes)",
                config.requestsDir(), limit);
        maxRequestBytes = limit;
    }

    long maxRequestBytes() {
        return maxRequestBytes;
    }

    long deletedByAge() {
        return deletedByAge;
    }

    long deletedBySize() {
        return deletedBySize;
    }

    long deletedByReaders() {
        return deletedByReaders;
    }

    long recordsDeleted() {
        return recordsDeleted;
    }

    /** Sweeps the request queue when it rolled to {@code cycle} since the last sweep. */
    void sweepIfRolled(int cycle) {
        if (cycle != lastSweptCycle) {
            lastSweptCycle = cycle;
            sweepRequests(cycle);
        }
    }

    /** Sweeps the request queue when it is over its size limit (a named reader held files back and may have read on). */
    void sweepIfOver(int currentCycle) {
        if (requestBytes.total() > maxRequestBytes) {
            sweepRequests(currentCycle);
        }
    }

    /**
     * Deletes finished request-queue files (never the one of {@code currentCycle}), oldest first: those every named
     * reader read past, those older than the age bound, then more while the queue takes more than its size limit,
     * unless a named reader has not read past the file (readers win over the size limit; a warning names the reader).
     */
    private void sweepRequests(int currentCycle) {
        boolean readers = !config.retainForReaders().isEmpty();
        int consumed = Integer.MIN_VALUE;
        String slowest = null;
        if (readers) {
            consumed = Integer.MAX_VALUE;
            for (String reader : config.retainForReaders()) {
                long index = ReaderPosition.read(config.dir(), reader);
                int cycle = index < 0 ? Integer.MIN_VALUE : requests.rollCycle().toCycle(index);
                if (cycle < consumed) {
                    consumed = cycle;
                    slowest = reader;
                }
            }
        }
        long oldestKept = config.maxAge() == null ? Long.MIN_VALUE : System.currentTimeMillis() - config.maxAge().toMillis();
        int length = requests.rollCycle().lengthInMillis();
        boolean deleted = false;
        for (Map.Entry<Integer, File> e : requestFiles.entrySet()) {
            int cycle = e.getKey();
            if (cycle >= currentCycle) {
                break;
            }
            boolean read = readers && cycle < consumed;
            boolean old = (cycle + 1L) * length < oldestKept;
            boolean over = requestBytes.total() > maxRequestBytes;
            if (!read && !old && over && readers) {
                heldBack(slowest, e.getValue());
                break;
            }
            if (!read && !old && !over) {
                break;
            }
            if (!retire(cycle)) {
                break;
            }
            deleted |= delete(e.getValue());
            requestFiles.remove(cycle);
            requestBytes.remove(cycle);
            Long records = recordsPerCycle.remove(cycle);
            recordsDeleted += records == null ? 0 : records;
            if (read) {
                deletedByReaders++;
            } else if (old) {
                deletedByAge++;
            } else {
                deletedBySize++;
            }
        }
        if (deleted) {
            requests.refreshDirectoryListing();
        }
    }

    /**
     * Takes the file of {@code cycle} off the ledger and writes the checkpoint before the file is deleted, so that no
     * reader takes retention's deletion for a loss; false (the file is kept for now) when the checkpoint cannot be
     * written.
     */
    private boolean retire(int cycle) {
        files.retire(cycle);
        try {
            if (checkpoint != null) {
                checkpoint.run();
            }
            return true;
        } catch (StoreException e) {
            LOG.warn(e.getMessage() + " (request file of cycle " + cycle + " kept until it can be written)");
            return false;
        }
    }

    /** Warns (once per reader and file) that the request queue stays over its size limit because of a named reader. */
    private void heldBack(String reader, File file) {
        String key = reader + "@" + file;
        if (!key.equals(heldBackWarned)) {
            heldBackWarned = key;
            LOG.warn(config.requestsDir() + ": the request queue takes " + requestBytes.total()
                    + " bytes, over its size limit of " + maxRequestBytes + " (maxRequestBytes), because named reader '" + reader
                    + "' has not read past " + file.getName() + " yet; it is kept until the reader reads on (retainForReaders wins)");
        }
    }

    /** Deletes journal cycles before {@code lastClearCycle}, the one holding the last clear: recovery never needs them. */
    void sweepJournal(int lastClearCycle) {
        boolean deleted = false;
        for (Map.Entry<Integer, File> e : journalFiles.entrySet()) {
            if (e.getKey() < lastClearCycle) {
                deleted |= delete(e.getValue());
                journalFiles.remove(e.getKey());
                journalBytes.remove(e.getKey());
            }
        }
        if (deleted) {
            journal.refreshDirectoryListing();
        }
    }

    private static boolean delete(File file) {
        try {
            return Files.deleteIfExists(file.toPath());
        } catch (IOException e) {
            throw new StoreException(file.toPath(), "cannot delete an expired queue file", e);
        }
    }
}
