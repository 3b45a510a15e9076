package dev.routingreplay.sink;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import net.openhft.chronicle.queue.ExcerptTailer;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueue;
import net.openhft.chronicle.wire.DocumentContext;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.Disposable;

/**
 * Where a request record is, by ordinal or by request id, for the replay server: built when the server opens the store
 * by reading every record's header (not its rows), kept current by reading the headers of new records before each
 * lookup and once a second, and trimmed once a second when retention deleted the oldest files.
 *
 * <p><b>Ordinals</b> are dense, 0, 1, 2, ... in write order, and stable: a record of version 3 or later stores its own (the writer
 * counts), so deleting old files or restarting the server never renumbers a record. Version 2 records (written before
 * ordinals existed) get theirs by counting: back from the first record of version 3 or later when there is one, else from 0 at the
 * first record still stored. Ordinal to index is kept as runs (first ordinal, first index, count) of records whose
 * ordinals and indexes both go up by one, one run per queue file in practice: memory grows with the files, not the
 * records.
 *
 * <p><b>Ids</b> are kept as hashes ({@link IdTable}, 11 to 22 bytes per record); a lookup returns candidate records,
 * newest first, and the caller compares the ids of the records it reads. A repeated id finds its newest record.
 *
 * <p>What retention deleted: ordinals below the first record still stored are {@link Where#DELETED}; an id whose
 * records were all deleted is still known as deleted until its entries are dropped (once more than
 * {@value #KEEP_DELETED_IDS} entries and a quarter of the table are deleted records), and then simply not found.
 *
 * <p>Threading: every method may be called from any thread; they are serialised (the tailers are touched by one
 * thread at a time). Lookups run on the replay readers' threads, never on Netty's event loop.
 */
final class RequestIndex implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(RequestIndex.class);
    /** Id entries of deleted records kept (so their ids answer "deleted") before a quarter of the table must be. */
    static final int KEEP_DELETED_IDS = 1 << 16;

    /** Where an ordinal is. */
    enum Where {
        /** At {@link Found#index}. */
        STORED,
        /** Below the first record still stored: deleted by retention. */
        DELETED,
        /** Never written (yet), or lost. */
        NONE
    }

    /** The answer of a lookup by ordinal: where the record is, and the index when stored. */
    record Found(Where where, long index) {
        static final Found NONE = new Found(Where.NONE, -1);
        static final Found DELETED = new Found(Where.DELETED, -1);
    }

    private final SingleChronicleQueue queue;
    private final Path queuePath;
    private final IdTable ids = new IdTable();
    private final RequestRecords.Peek peek = new RequestRecords.Peek();
    private final ExcerptTailer tailer;
    private final Disposable refresher;
    private long[] runOrdinal = new long[16];
    private long[] runIndex = new long[16];
    private long[] runCount = new long[16];
    private int head;
    private int tail;
    private long lastOrdinal = -1;
    private long lastIndex = -1;
    private boolean storedOrdinalSeen;
    private long deletedEntries;
    private boolean warnedBackwards;
    private boolean closed;
    /** Why indexing stopped (a damaged file), or null. */
    private String stuckAt;

    /** Indexes every record of {@code queue} now (headers only), then keeps up once a second until closed. */
    RequestIndex(SingleChronicleQueue queue, Path queuePath) {
        this.queue = queue;
        this.queuePath = queuePath;
        this.tailer = queue.createTailer();
        tailer.toStart();
        catchUp();
        this.refresher = ReplayCursor.READERS.schedulePeriodically(this::refresh, 1, 1, TimeUnit.SECONDS);
    }

    /** Reads new headers and drops what retention deleted; for the periodic task (failures are logged, not thrown). */
    private synchronized void refresh() {
        if (closed) {
            return;
        }
        try {
            catchUp();
            trim();
        } catch (RuntimeException | Error e) {
            LOG.warn(queuePath + ": request index refresh failed: " + e);
        }
    }

    /** Reads new headers and drops what retention deleted, now (a record the index knew was found deleted). */
    synchronized void refreshNow() {
        catchUp();
        trim();
    }

    /**
     * Indexes the records written since the last call. A queue file Chronicle cannot read on (a cut or damaged file)
     * ends the index there, with one warning: the records before it keep their ordinals and ids, the others stay
     * reachable by their index only.
     */
    private void catchUp() {
        if (stuckAt != null) {
            return;
        }
        tailer.singleThreadedCheckReset();
        try {
            for (;;) {
                try (DocumentContext dc = tailer.readingDocument()) {
                    if (!dc.isPresent()) {
                        return;
                    }
                    add(dc.index(), RequestRecords.peek(dc.wire().bytes(), peek));
                }
            }
        } catch (RuntimeException | AssertionError | InternalError e) {
            stuckAt = e.toString();
            LOG.warn(queuePath + ": cannot index the request queue past index " + Long.toHexString(lastIndex)
                    + " (damaged or truncated queue file: " + e + "); later records are served by /requests/index/<hex>.npy only");
        }
    }

    private void add(long index, boolean peeked) {
        long expected = lastOrdinal + 1;
        long ordinal = expected;
        if (peeked && peek.version >= RecordFormat.REQUEST_VERSION_3) {
            if (!storedOrdinalSeen) {
                storedOrdinalSeen = true;
                if (head < tail) {
                    // the version 2 records before it: count back from the first stored ordinal
                    shift(peek.ordinal - expected);
                }
                ordinal = peek.ordinal;
            } else if (peek.ordinal >= expected) {
                ordinal = peek.ordinal;
            } else if (!warnedBackwards) {
                warnedBackwards = true;
                LOG.warn(queuePath + ": the record at index " + Long.toHexString(index) + " stores ordinal "
                        + peek.ordinal + ", not above its predecessor's " + lastOrdinal + " (damaged header?); numbering it " + expected);
            }
        }
        if (head < tail && index == lastIndex + 1 && ordinal == lastOrdinal + 1) {
            runCount[tail - 1]++;
        } else {
            if (tail == runOrdinal.length) {
                compact();
            }
            runOrdinal[tail] = ordinal;
            runIndex[tail] = index;
            runCount[tail] = 1;
            tail++;
        }
        if (peeked) {
            ids.add(peek.idHash, ordinal);
        }
        lastOrdinal = ordinal;
        lastIndex = index;
    }

    private void shift(long delta) {
        for (int i = head; i < tail; i++) {
            runOrdinal[i] += delta;
        }
        ids.shift(delta);
        lastOrdinal += delta;
    }

    /** Moves the live runs to the front, growing the arrays when they are more than half full. */
    private void compact() {
        int n = tail - head;
        int capacity = n * 2 > runOrdinal.length ? runOrdinal.length * 2 : runOrdinal.length;
        runOrdinal = Arrays.copyOfRange(runOrdinal, head, head + capacity);
        runIndex = Arrays.copyOfRange(runIndex, head, head + capacity);
        runCount = Arrays.copyOfRange(runCount, head, head + capacity);
        head = 0;
        tail = n;
    }

    /** Drops the runs (and, in bulk, the id entries) of records below the first one still stored. */
    private void trim() {
        if (head == tail) {
            return;
        }
        long first = firstStoredIndex();
        if (first < 0) {
            return;
        }
        while (head < tail && runIndex[head] + runCount[head] <= first) {
            deletedEntries += runCount[head];
            head++;
        }
        if (head < tail && runIndex[head] < first) {
            long cut = first - runIndex[head];
            deletedEntries += cut;
            runIndex[head] += cut;
            runOrdinal[head] += cut;
            runCount[head] -= cut;
        }
        if (deletedEntries > KEEP_DELETED_IDS && deletedEntries * 4 > ids.size()) {
            ids.retainFrom(firstOrdinal());
            deletedEntries = 0;
        }
    }

    /** The index of the first record still in the queue, or -1 when there is none. */
    private long firstStoredIndex() {
        try (ExcerptTailer probe = queue.createTailer()) {
            probe.toStart();
            try (DocumentContext dc = probe.readingDocument()) {
                if (!dc.isPresent()) {
                    return -1;
                }
                dc.rollbackOnClose();
                return dc.index();
            }
        }
    }

    /** The ordinal of the first record still stored (as far as the index knows), or {@code lastOrdinal() + 1} when none is. */
    synchronized long firstOrdinal() {
        return head < tail ? runOrdinal[head] : lastOrdinal + 1;
    }

    /** The ordinal of the newest record, after reading the headers of records written since the last lookup; -1 when none. */
    synchronized long lastOrdinal() {
        catchUp();
        return lastOrdinal;
    }

    /** Where the record of {@code ordinal} is, after reading new headers. */
    synchronized Found byOrdinal(long ordinal) {
        catchUp();
        if (ordinal > lastOrdinal) {
            return Found.NONE;
        }
        if (head == tail || ordinal < runOrdinal[head]) {
            return Found.DELETED;
        }
        int lo = head;
        int hi = tail - 1;
        while (lo < hi) {
            int mid = (lo + hi + 1) >>> 1;
            if (runOrdinal[mid] <= ordinal) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        long offset = ordinal - runOrdinal[lo];
        return offset < runCount[lo] ? new Found(Where.STORED, runIndex[lo] + offset) : Found.NONE;
    }

    /** The ordinal of the record at {@code index}, or -1 when the index knows no record there. */
    synchronized long ordinalOf(long index) {
        if (index > lastIndex) {
            catchUp();
        }
        if (head == tail || index < runIndex[head]) {
            return -1;
        }
        int lo = head;
        int hi = tail - 1;
        while (lo < hi) {
            int mid = (lo + hi + 1) >>> 1;
            if (runIndex[mid] <= index) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        long offset = index - runIndex[lo];
        return offset < runCount[lo] ? runOrdinal[lo] + offset : -1;
    }

    /**
     * The ordinals of the records whose id may be {@code requestId}, newest first (compare the ids of the records);
     * some may lie below {@link #firstOrdinal()} (deleted).
     */
    synchronized long[] byId(String requestId) {
        catchUp();
        byte[] utf8 = requestId.getBytes(StandardCharsets.UTF_8);
        return ids.candidates(RequestRecords.idHash(utf8, 0, utf8.length));
    }

    /** Runs of consecutive records held (one per queue file in practice); for tests. */
    synchronized int runs() {
        return tail - head;
    }

    /** Bytes the id table takes; for tests and the docs' figure. */
    synchronized long idTableBytes() {
        return ids.bytes();
    }

    /** Stops the periodic refresh and closes the tailer; the queue stays open (it is the caller's). */
    @Override
    public void close() {
        refresher.dispose();
        synchronized (this) {
            closed = true;
            tailer.singleThreadedCheckReset();
            tailer.close();
        }
    }
}
