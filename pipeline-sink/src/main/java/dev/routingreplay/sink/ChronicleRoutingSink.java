package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.sink.RoutingSink;
import dev.routingreplay.core.sink.SlotStore;
import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentSkipListMap;
import net.openhft.chronicle.bytes.Bytes;
import net.openhft.chronicle.bytes.BytesStore;
import net.openhft.chronicle.queue.ExcerptAppender;
import net.openhft.chronicle.queue.ExcerptTailer;
import net.openhft.chronicle.queue.impl.StoreFileListener;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueue;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueueBuilder;
import net.openhft.chronicle.wire.DocumentContext;

/**
 * The durable sink: a Chronicle Queue journal (one excerpt per event, the source of truth), an in-memory slot index
 * rebuilt from the journal on open, and a request queue with one self-describing record per finished request,
 * which trainers tail with {@link RoutingReplay}.
 *
 * <p>Guarantees: when a method returns, its excerpt is in the memory-mapped queue file and survives {@code kill -9}
 * of the process (not a power loss); a write that fails is rolled back, never left half-written; a finish of a
 * request already recorded in this round is skipped, so a request record is never duplicated; writes fail with a
 * {@link StoreException} naming the path when free space falls below {@link StoreConfig#minFreeBytes()}.
 *
 * <p>Threading: one thread at a time (the pipeline's sink thread), like every {@link RoutingSink}.
 */
public final class ChronicleRoutingSink implements RoutingSink, AutoCloseable {
    private static final long SPACE_CHECK_BYTES = 16L << 20;

    private final StoreConfig config;
    private final RoutingShape shape;
    private final int rowBytes;
    private final StoreManifest manifest;
    private final SlotStore store;
    private final SingleChronicleQueue journal;
    private final SingleChronicleQueue requests;
    private final Map<Integer, File> journalFiles = new ConcurrentSkipListMap<>();
    private final Map<Integer, File> requestFiles = new ConcurrentSkipListMap<>();
    private final Set<String> finishedThisRound = new HashSet<>();
    private final Map<ByteBuffer, BytesStore<?, ByteBuffer>> wrapped = new IdentityHashMap<>();
    private final RecoveryReport recovery;
    private ExcerptAppender journalAppender;
    private ExcerptAppender requestAppender;
    private Thread owner;
    private long round;
    private int lastClearCycle = Integer.MIN_VALUE;
    private int lastSweptCycle = Integer.MIN_VALUE;
    private long bytesSinceSpaceCheck = SPACE_CHECK_BYTES;
    private byte[] gatherBytes = new byte[0];
    private ByteBuffer gatherBuffer = ByteBuffer.wrap(gatherBytes);
    private long duplicateFinishes;
    private boolean closed;
    private StoreException broken;
    /** Test seam: runs inside every write, after its bytes and before its commit; a throw there rolls the write back. */
    WriteProbe probe = WriteProbe.NONE;

    private ChronicleRoutingSink(StoreConfig config) {
        this.config = config;
        this.shape = config.shape();
        this.rowBytes = shape.rowBytes();
        this.manifest = StoreManifest.openOrCreate(config.dir(), shape, config.slotCapacity());
        SlotStore slots = new SlotStore(shape, manifest.slotCapacity());
        SingleChronicleQueue j = null;
        SingleChronicleQueue r = null;
        try {
            j = openQueue(config.journalDir(), journalFiles, "journal", config.journalBlockSize());
            r = openQueue(config.requestsDir(), requestFiles, "request", config.requestBlockSize());
            this.store = slots;
            this.journal = j;
            this.requests = r;
            long start = System.nanoTime();
            long[] replayed = replayJournal();
            long records = scanRequests();
            this.recovery = new RecoveryReport(replayed[0], replayed[1], replayed[2], replayed[3], round, replayed[4], records,
                    replayed[5], replayed[6], (System.nanoTime() - start) / 1_000_000);
        } catch (RuntimeException | Error e) {
            slots.close();
            if (j != null) {
                j.close();
            }
            if (r != null) {
                r.close();
            }
            throw e;
        }
    }

    /**
     * Opens (or creates) the store at {@code config.dir()} and recovers the slot index from its journal.
     *
     * @throws StoreException naming the path when the folder cannot be written, the store has another shape, or a
     *     file is corrupt
     */
    public static ChronicleRoutingSink open(StoreConfig config) {
        return new ChronicleRoutingSink(config);
    }

    private SingleChronicleQueue openQueue(Path dir, Map<Integer, File> files, String what, long blockSize) {
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new StoreException(dir, "cannot create the " + what + " queue folder", e);
        }
        try {
            return SingleChronicleQueueBuilder.binary(dir).rollCycle(config.rollCycle()).blockSize(blockSize).timeoutMS(2_000)
                    .storeFileListener(new StoreFileListener() {
                        @Override
                        public void onAcquired(int cycle, File file) {
                            files.put(cycle, file);
                        }

                        @Override
                        public void onReleased(int cycle, File file) {
                            files.put(cycle, file);
                        }
                    }).build();
        } catch (RuntimeException e) {
            throw new StoreException(dir, "cannot open the " + what + " queue", e);
        }
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
        int[] slots = new int[0];
        byte[] rowBytesBuf = new byte[0];
        try (ExcerptTailer tailer = journal.createTailer()) {
            for (;;) {
                try (DocumentContext dc = tailer.readingDocument()) {
                    if (!dc.isPresent()) {
                        break;
                    }
                    long index = dc.index();
                    Bytes<?> b = dc.wire().bytes();
                    records++;
                    afterClear++;
                    try {
                        byte type = b.readByte();
                        switch (type) {
                            case RecordFormat.STEP: {
                                lastStep = b.readLong();
                                int n = b.readInt();
                                if (n < 0 || b.readRemaining() != (long) n * (4 + rowBytes)) {
                                    throw corrupt(path, index, "step " + lastStep + " declares " + n + " tokens but holds "
                                            + b.readRemaining() + " bytes");
                                }
                                if (slots.length < n) {
                                    slots = new int[n];
                                    rowBytesBuf = new byte[n * rowBytes];
                                }
                                for (int t = 0; t < n; t++) {
                                    slots[t] = b.readInt();
                                }
                                b.read(rowBytesBuf, 0, n * rowBytes);
                                ByteBuffer rowView = ByteBuffer.wrap(rowBytesBuf);
                                for (int t = 0; t < n; t++) {
                                    int slot = slots[t];
                                    if (slot < -1 || slot >= store.slotCapacity()) {
                                        throw corrupt(path, index, "step " + lastStep + " token " + t + " has slot " + slot);
                                    }
                                    if (slot >= 0) {
                                        store.put(slot, rowView, t * rowBytes);
                                        rows++;
                                    }
                                }
                                steps++;
                                break;
                            }
                            case RecordFormat.FINISH:
                            case RecordFormat.ABORT:
                                break;
                            case RecordFormat.MOVE: {
                                int n = b.readInt();
                                if (n < 0 || b.readRemaining() != 8L * n) {
                                    throw corrupt(path, index, "move declares " + n + " slots but holds " + b.readRemaining() + " bytes");
                                }
                                int[] src = new int[n];
                                int[] dst = new int[n];
                                for (int i = 0; i < n; i++) {
                                    src[i] = b.readInt();
                                }
                                for (int i = 0; i < n; i++) {
                                    dst[i] = b.readInt();
                                }
                                store.move(new SlotsMoved(src, dst));
                                moves++;
                                break;
                            }
                            case RecordFormat.CLEAR:
                                round = b.readLong();
                                store.clear();
                                lastClearCycle = journal.rollCycle().toCycle(index);
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
        } catch (RuntimeException e) {
            throw new StoreException(path, "cannot read the journal", e);
        }
        return new long[] {steps, rows, moves, clears, lastStep, records, afterClear};
    }

    private static StoreException corrupt(Path path, long index, String problem) {
        return new StoreException(path, "corrupt journal record at index " + Long.toHexString(index) + ": " + problem);
    }

    /** Collects the ids recorded in the current round, so a finish replayed after a crash is not recorded twice. */
    private long scanRequests() {
        Path path = config.requestsDir();
        long count = 0;
        try (ExcerptTailer tailer = requests.createTailer()) {
            for (;;) {
                try (DocumentContext dc = tailer.readingDocument()) {
                    if (!dc.isPresent()) {
                        break;
                    }
                    RequestRecords.Header h = RequestRecords.readHeader(dc.wire().bytes(), path, dc.index());
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
        } catch (RuntimeException e) {
            throw new StoreException(path, "cannot read the request queue", e);
        }
        return count;
    }

    /** What opening the store recovered. */
    public RecoveryReport recovery() {
        return recovery;
    }

    /** The store's folder. */
    public Path dir() {
        return config.dir();
    }

    /** Finishes skipped because the request was already recorded in this round. */
    public long duplicateFinishes() {
        return duplicateFinishes;
    }

    @Override
    public RoutingShape shape() {
        return shape;
    }

    @Override
    public int slotCapacity() {
        return manifest.slotCapacity();
    }

    @Override
    public int scatter(CapturedStep step) {
        int n = step.tokenCount();
        if (n > config.maxStepTokens()) {
            throw new IllegalArgumentException("step " + step.stepId() + ": tokenCount=" + n + " exceeds the store's maxStepTokens="
                    + config.maxStepTokens() + " (StoreConfig.withLimits)");
        }
        long bytes = 13L + 4L * n + (long) n * rowBytes;
        prepareWrite(bytes);
        BytesStore<?, ByteBuffer> memory = wrapped.get(step.memory());
        if (memory == null) {
            if (wrapped.size() > 256) {
                wrapped.clear();
            }
            memory = BytesStore.wrap(step.memory());
            wrapped.put(step.memory(), memory);
        }
        try (DocumentContext dc = journalAppender.writingDocument()) {
            try {
                Bytes<?> b = dc.wire().bytes();
                b.writeByte(RecordFormat.STEP);
                b.writeLong(step.stepId());
                b.writeInt(n);
                b.write(memory, step.slotsOffset(), 4L * n);
                b.write(memory, step.rowOffset(0), (long) n * rowBytes);
                probe.beforeCommit(config.journalDir(), RecordFormat.STEP);
            } catch (Throwable e) {
                dc.rollbackOnClose();
                throw writeFailed(config.journalDir(), e);
            }
        }
        return store.scatter(step);
    }

    @Override
    public void finish(RequestFinished request) {
        String id = request.requestId();
        if (finishedThisRound.contains(id)) {
            duplicateFinishes++;
            return;
        }
        int n = request.seqLen();
        if (n > config.maxRequestTokens()) {
            throw new IllegalArgumentException("request " + id + ": seqLen=" + n + " exceeds the store's maxRequestTokens="
                    + config.maxRequestTokens() + " (StoreConfig.withLimits)");
        }
        int total = n * rowBytes;
        prepareWrite(64L + id.length() * 3L + total);
        if (gatherBytes.length < total) {
            gatherBytes = new byte[Math.max(total, gatherBytes.length * 2)];
            gatherBuffer = ByteBuffer.wrap(gatherBytes).order(ByteOrder.LITTLE_ENDIAN);
        }
        store.gatherInto(request, gatherBuffer);
        try (DocumentContext dc = requestAppender.writingDocument()) {
            try {
                RequestRecords.write(dc.wire().bytes(), id, round, shape, n, gatherBytes, total);
                probe.beforeCommit(config.requestsDir(), WriteProbe.REQUEST);
            } catch (Throwable e) {
                dc.rollbackOnClose();
                throw writeFailed(config.requestsDir(), e);
            }
        }
        long requestIndex = requestAppender.lastIndexAppended();
        finishedThisRound.add(id);
        try (DocumentContext dc = journalAppender.writingDocument()) {
            try {
                Bytes<?> b = dc.wire().bytes();
                b.writeByte(RecordFormat.FINISH);
                b.writeUtf8(id);
                b.writeInt(n);
                b.writeLong(requestIndex);
                probe.beforeCommit(config.journalDir(), RecordFormat.FINISH);
            } catch (Throwable e) {
                dc.rollbackOnClose();
                throw writeFailed(config.journalDir(), e);
            }
        }
        sweepIfRolled();
    }

    @Override
    public void abort(RequestAborted request) {
        prepareWrite(16L + request.requestId().length() * 3L);
        try (DocumentContext dc = journalAppender.writingDocument()) {
            try {
                Bytes<?> b = dc.wire().bytes();
                b.writeByte(RecordFormat.ABORT);
                b.writeUtf8(request.requestId());
                probe.beforeCommit(config.journalDir(), RecordFormat.ABORT);
            } catch (Throwable e) {
                dc.rollbackOnClose();
                throw writeFailed(config.journalDir(), e);
            }
        }
    }

    @Override
    public void move(SlotsMoved move) {
        int[] src = move.sourceSlots();
        int[] dst = move.destinationSlots();
        prepareWrite(8L + 8L * src.length);
        try (DocumentContext dc = journalAppender.writingDocument()) {
            try {
                Bytes<?> b = dc.wire().bytes();
                b.writeByte(RecordFormat.MOVE);
                b.writeInt(src.length);
                for (int s : src) {
                    b.writeInt(s);
                }
                for (int d : dst) {
                    b.writeInt(d);
                }
                probe.beforeCommit(config.journalDir(), RecordFormat.MOVE);
            } catch (Throwable e) {
                dc.rollbackOnClose();
                throw writeFailed(config.journalDir(), e);
            }
        }
        // journal, then apply (as scatter): the index never holds an effect the journal lacks
        store.move(move);
    }

    @Override
    public void clear(RoundCleared clear) {
        prepareWrite(32);
        try (DocumentContext dc = journalAppender.writingDocument()) {
            try {
                Bytes<?> b = dc.wire().bytes();
                b.writeByte(RecordFormat.CLEAR);
                b.writeLong(round + 1);
                b.writeLong(clear.round());
                probe.beforeCommit(config.journalDir(), RecordFormat.CLEAR);
            } catch (Throwable e) {
                dc.rollbackOnClose();
                throw writeFailed(config.journalDir(), e);
            }
        }
        round++;
        store.clear();
        finishedThisRound.clear();
        lastClearCycle = journalAppender.cycle();
        sweepJournal();
    }

    /**
     * The rows the slot index holds now at {@code slots}, as a request named {@code "slots"} (a copy). For tools and
     * tests; call it from the sink thread or while no pipeline runs.
     *
     * @throws IllegalStateException when a slot holds no routing
     */
    public RequestRouting read(int... slots) {
        return new RequestRouting("slots", shape, slots.length, store.gather(new RequestFinished("slots", slots)));
    }

    /** The store's round: clears so far. */
    public long round() {
        return round;
    }

    private void prepareWrite(long bytes) {
        if (closed) {
            throw new IllegalStateException("store " + config.dir() + " is closed");
        }
        if (broken != null) {
            throw new StoreException(config.dir(), "an earlier write failed fatally; the store refuses writes until reopened", broken);
        }
        Thread current = Thread.currentThread();
        if (owner != current) {
            if (journalAppender == null) {
                journalAppender = journal.createAppender();
                requestAppender = requests.createAppender();
            } else {
                journalAppender.singleThreadedCheckReset();
                requestAppender.singleThreadedCheckReset();
            }
            owner = current;
        }
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
     * refuses every later write, so nothing after it is acknowledged.
     */
    private StoreException writeFailed(Path path, Throwable e) {
        if (e instanceof Error) {
            broken = new StoreException(path, "fatal error during a store write; the store refuses further writes until reopened", e);
            return broken;
        }
        return new StoreException(path, "write failed and was rolled back", e);
    }

    private void sweepIfRolled() {
        int cycle = requestAppender.cycle();
        if (cycle != lastSweptCycle) {
            lastSweptCycle = cycle;
            sweepRequests(cycle);
        }
    }

    /** Deletes request-queue cycles that every retained reader consumed, or that are older than the age bound. */
    private void sweepRequests(int currentCycle) {
        if (config.retainForReaders().isEmpty() && config.maxAge() == null) {
            return;
        }
        int consumed = Integer.MIN_VALUE;
        if (!config.retainForReaders().isEmpty()) {
            consumed = Integer.MAX_VALUE;
            for (String reader : config.retainForReaders()) {
                long index = requests.indexForId(reader).getVolatileValue();
                int cycle = index <= 0 ? Integer.MIN_VALUE : requests.rollCycle().toCycle(index);
                consumed = Math.min(consumed, cycle);
            }
        }
        long oldestKept = config.maxAge() == null ? Long.MIN_VALUE : System.currentTimeMillis() - config.maxAge().toMillis();
        int length = requests.rollCycle().lengthInMillis();
        boolean deleted = false;
        for (Map.Entry<Integer, File> e : requestFiles.entrySet()) {
            int cycle = e.getKey();
            boolean read = cycle < consumed;
            boolean old = (cycle + 1L) * length < oldestKept;
            if (cycle < currentCycle && (read || old)) {
                deleted |= delete(e.getValue());
                requestFiles.remove(cycle);
            }
        }
        if (deleted) {
            requests.refreshDirectoryListing();
        }
    }

    /** Deletes journal cycles before the one holding the last clear: recovery never needs them. */
    private void sweepJournal() {
        boolean deleted = false;
        for (Map.Entry<Integer, File> e : journalFiles.entrySet()) {
            if (e.getKey() < lastClearCycle) {
                deleted |= delete(e.getValue());
                journalFiles.remove(e.getKey());
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

    /** Called inside every store write after its bytes were written and before it commits (fault injection in tests). */
    interface WriteProbe {
        /** The probe that does nothing. */
        WriteProbe NONE = (queue, kind) -> { };
        /** The kind of a request record (journal excerpts use their {@link RecordFormat} type). */
        byte REQUEST = 0;

        void beforeCommit(Path queue, byte kind);
    }

    /** Closes the queues and frees the slot index. Idempotent. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        journal.close();
        requests.close();
        store.close();
    }
}
