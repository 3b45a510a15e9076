package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.RingSlotLayout;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.sink.MissingReason;
import dev.routingreplay.core.sink.SlotStore;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import net.openhft.chronicle.bytes.Bytes;
import net.openhft.chronicle.queue.ExcerptTailer;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueue;
import net.openhft.chronicle.wire.DocumentContext;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Recovery on open: replays the journal into the slot index (steps with their write stamps, moves, clears; the round
 * is the last clear's), reads the request queue to collect the ids recorded in the current round (so a later finish
 * of one of them is known to supersede it), counts both queues' bytes and the records per request file, compares the last excerpts with
 * the checkpoint (a loss is logged and reported), and builds the {@link RecoveryReport}. Every damaged or corrupt
 * record fails with a {@link StoreException} naming the queue.
 *
 * <p>Threading: used once, by the thread that opens the sink, before the sink is published.
 */
final class JournalRecovery {
    private static final Logger LOG = LoggerFactory.getLogger(ChronicleRoutingSink.class);

    private final StoreConfig config;
    private final RoutingShape shape;
    private final int rowBytes;
    private final SlotStore store;
    private final SingleChronicleQueue journal;
    private final SingleChronicleQueue requests;
    private final QueueBytes journalBytes;
    private final QueueBytes requestBytes;
    private final RetentionSweeper retention;
    private final Set<String> finishedThisRound;
    private long lastJournalIndex = -1;
    private long lastRequestIndex = -1;
    private long lastRequestOrdinal = -1;
    private long round;

    JournalRecovery(StoreConfig config, SlotStore store, SingleChronicleQueue journal, SingleChronicleQueue requests, QueueBytes journalBytes,
            QueueBytes requestBytes, RetentionSweeper retention, Set<String> finishedThisRound) {
        this.config = config;
        this.shape = config.shape();
        this.rowBytes = shape.rowBytes();
        this.store = store;
        this.journal = journal;
        this.requests = requests;
        this.journalBytes = journalBytes;
        this.requestBytes = requestBytes;
        this.retention = retention;
        this.finishedThisRound = finishedThisRound;
    }

    /** Recovers the store (see the class comment); logs each loss the checkpoint shows. */
    RecoveryReport recover() {
        long start = System.nanoTime();
        long[] replayed = replayJournal();
        long records = scanRequests();
        StoreCheckpoint acknowledged = StoreCheckpoint.read(config.dir());
        lastRequestOrdinal = Math.max(lastRequestOrdinal, acknowledged.requestsLastOrdinal());
        List<String> losses = new ArrayList<>();
        String lost = StoreCheckpoint.lost("journal", config.journalDir(), lastJournalIndex, acknowledged.journalLastIndex());
        if (lost != null) {
            losses.add(lost);
        }
        lost = StoreCheckpoint.lost("request queue", config.requestsDir(), lastRequestIndex, acknowledged.requestsLastIndex());
        // a tail lost with a missing file is that file's loss, named below
        if (lost != null && !retention.files().missingHolds(config.requestsDir(), acknowledged.requestsLastIndex())) {
            losses.add(lost);
        }
        for (String missing : retention.files().missing(config.requestsDir(), -1)) {
            losses.add(config.requestsDir() + ": " + missing);
        }
        RecoveryReport report = new RecoveryReport(replayed[0], replayed[1], replayed[2], replayed[3], round, replayed[4], records,
                replayed[5], replayed[6], (System.nanoTime() - start) / 1_000_000, losses);
        for (String line : losses) {
            LOG.warn(line);
        }
        return report;
    }

    /** The index of the journal's last excerpt, or -1. */
    long lastJournalIndex() {
        return lastJournalIndex;
    }

    /**
     * The ordinal the last record has (stored in a version 3 record; a version 2 record's is its predecessor's plus
     * one, counting from 0), at least the checkpoint's, or -1.
     */
    long lastRequestOrdinal() {
        return lastRequestOrdinal;
    }

    /** The index of the request queue's last record, or -1. */
    long lastRequestIndex() {
        return lastRequestIndex;
    }

    /** The store's round: the last clear's. */
    long round() {
        return round;
    }

    /** Replays the journal into the slot index; returns {steps, rows, moves, clears, lastStepId, records, recordsAfterClear}. */
    private long[] replayJournal() {
        Path path = config.journalDir();
        long steps = 0;
        long rows = 0;
        long moves = 0;
        long clears = 0;
        long lastStep = -1;
        long records = 0;
        long afterClear = 0;
        byte[] scratch = new byte[1 << 16];
        try (ExcerptTailer tailer = journal.createTailer()) {
            for (;;) {
                try (DocumentContext dc = tailer.readingDocument()) {
                    if (!dc.isPresent()) {
                        break;
                    }
                    long index = dc.index();
                    Bytes<?> in = dc.wire().bytes();
                    journalBytes.extend(journal.rollCycle().toCycle(index), in.readPosition() & -Preallocation.PAGE,
                            Preallocation.allocatedFor(in.readLimit()));
                    if (scratch.length < in.readRemaining() && in.readRemaining() < Integer.MAX_VALUE - 8) {
                        scratch = new byte[(int) in.readRemaining()];
                    }
                    ByteBuffer b = RecordFormat.readChecked(in, path, "journal record", index, scratch);
                    lastJournalIndex = index;
                    records++;
                    afterClear++;
                    try {
                        byte type = b.get();
                        switch (type) {
                            case RecordFormat.STEP: {
                                lastStep = b.getLong();
                                int n = b.getInt();
                                if (n < 0 || b.remaining() != (long) n * (4 + rowBytes)) {
                                    throw corrupt(path, index, "step " + lastStep + " declares " + n + " tokens but holds "
                                            + b.remaining() + " bytes");
                                }
                                int rowStart = b.position() + 4 * n;
                                store.beginStep(); // the step's stamp, as the live sink gave it
                                for (int t = 0; t < n; t++) {
                                    int slot = b.getInt();
                                    if (RingSlotLayout.isDropped(slot)) {
                                        // a row the pack dropped (an expert id out of range): the slot is missing
                                        int dropped = RingSlotLayout.droppedSlot(slot);
                                        if (dropped >= store.slotCapacity()) {
                                            throw corrupt(path, index, "step " + lastStep + " token " + t + " has dropped slot " + dropped);
                                        }
                                        store.putMissing(dropped, MissingReason.INVALID_ID);
                                        continue;
                                    }
                                    if (slot >= store.slotCapacity()) {
                                        throw corrupt(path, index, "step " + lastStep + " token " + t + " has slot " + slot);
                                    }
                                    if (slot >= 0) {
                                        store.put(slot, b, rowStart + t * rowBytes);
                                        rows++;
                                    }
                                }
                                steps++;
                                break;
                            }
                            case RecordFormat.FINISH:
                            case RecordFormat.ABORT:
                                RecordFormat.getUtf8(b);
                                break;
                            case RecordFormat.MOVE: {
                                int n = b.getInt();
                                if (n < 0 || b.remaining() != 8L * n) {
                                    throw corrupt(path, index, "move declares " + n + " slots but holds " + b.remaining() + " bytes");
                                }
                                int[] src = new int[n];
                                int[] dst = new int[n];
                                for (int i = 0; i < n; i++) {
                                    src[i] = b.getInt();
                                }
                                for (int i = 0; i < n; i++) {
                                    dst[i] = b.getInt();
                                }
                                store.move(new SlotsMoved(src, dst));
                                moves++;
                                break;
                            }
                            case RecordFormat.CLEAR:
                                round = b.getLong();
                                store.clear();
                                clears++;
                                afterClear = 0;
                                break;
                            default:
                                throw corrupt(path, index, "unknown record type " + type);
                        }
                    } catch (StoreException e) {
                        throw e;
                    } catch (RuntimeException e) {
                        throw new StoreException(path, "corrupt journal record at index " + Long.toHexString(index), e);
                    }
                }
            }
        } catch (StoreException e) {
            throw e;
        } catch (RuntimeException | AssertionError | InternalError e) {
            // Chronicle's own checks of a damaged file (a cut header, a length past the end of the file)
            throw new StoreException(path, "cannot read the journal (damaged or truncated queue file)", e);
        }
        return new long[] {steps, rows, moves, clears, lastStep, records, afterClear};
    }

    private static StoreException corrupt(Path path, long index, String problem) {
        return new StoreException(path, "corrupt journal record at index " + Long.toHexString(index) + ": " + problem);
    }

    /** Collects the ids recorded in the current round, so a later finish of one of them is known to supersede it. */
    private long scanRequests() {
        Path path = config.requestsDir();
        long count = 0;
        RequestRecords.Header[] header = new RequestRecords.Header[1];
        try (ExcerptTailer tailer = requests.createTailer()) {
            for (;;) {
                try (DocumentContext dc = tailer.readingDocument()) {
                    if (!dc.isPresent()) {
                        break;
                    }
                    Bytes<?> in = dc.wire().bytes();
                    int cycle = requests.rollCycle().toCycle(dc.index());
                    requestBytes.extend(cycle, in.readPosition() & -Preallocation.PAGE, Preallocation.allocatedFor(in.readLimit()));
                    retention.recorded(cycle);
                    RequestRecords.readChecked(in, path, dc.index(), header);
                    RequestRecords.Header h = header[0];
                    lastRequestIndex = dc.index();
                    lastRequestOrdinal = h.ordinal() >= 0 ? h.ordinal() : lastRequestOrdinal + 1;
                    retention.files().recorded(lastRequestIndex, lastRequestOrdinal);
                    if (!h.shape().equals(shape)) {
                        throw new StoreException(path, "request record " + h.requestId() + " has shape " + h.shape().describe()
                                + ", the store " + shape.describe());
                    }
                    if (h.round() == round) {
                        finishedThisRound.add(h.requestId());
                        count++;
                    }
                }
            }
        } catch (StoreException e) {
            throw e;
        } catch (RuntimeException | AssertionError | InternalError e) {
            throw new StoreException(path, "cannot read the request queue (damaged or truncated queue file)", e);
        }
        return count;
    }
}
