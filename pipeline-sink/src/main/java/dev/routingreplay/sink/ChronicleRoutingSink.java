package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.memory.NativeOwnerGuard;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.sink.RoutingSink;
import dev.routingreplay.core.sink.SlotStore;
import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentSkipListMap;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import java.util.zip.CRC32C;
import net.openhft.chronicle.bytes.Bytes;
import net.openhft.chronicle.bytes.BytesStore;
import net.openhft.chronicle.queue.ExcerptAppender;
import net.openhft.chronicle.queue.ExcerptTailer;
import net.openhft.chronicle.queue.RollCycle;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueue;
import net.openhft.chronicle.wire.DocumentContext;

/**
 * The durable sink: a Chronicle Queue journal (one excerpt per event, the source of truth), an in-memory slot index
 * rebuilt from the journal on open, and a request queue with one self-describing record per finished request,
 * which trainers tail with {@link RoutingReplay}.
 *
 * <p>Guarantees: when a method returns, its excerpt is in the memory-mapped queue file and survives {@code kill -9}
 * of the process (not a power loss); a write that fails is rolled back, never left half-written; a finish of a
 * request already recorded in this round is skipped, so a request record is never duplicated; writes fail with a
 * {@link StoreException} naming the path when free space falls below {@link StoreConfig#minFreeBytes()}, and naming
 * the queue file when the disk fills before the bytes a write will touch exist (they are allocated before the mapped
 * write, see {@link Preallocation}), never with a SIGBUS in the middle of an excerpt.
 *
 * <p>Threading: one thread at a time (the pipeline's sink thread), like every {@link RoutingSink}. {@link #close} may
 * be called from any thread, also concurrently with itself or with a running sink call: it waits for a running call
 * to finish (so a write is never cut off by unmapping its file), and every later call throws an
 * {@link IllegalStateException} naming the store, never a crash.
 */
public final class ChronicleRoutingSink implements RoutingSink, AutoCloseable {
    private static final long SPACE_CHECK_BYTES = 16L << 20;
    private static final long CHECKPOINT_NANOS = 1_000_000_000L;
    private static final System.Logger LOG = System.getLogger(ChronicleRoutingSink.class.getName());

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
    private final Preallocation journalSpace;
    private final Preallocation requestSpace;
    private final QueueBytes journalBytes = new QueueBytes();
    private final QueueBytes requestBytes = new QueueBytes();
    /** Request records by cycle, so that retention can count what it deleted. */
    private final Map<Integer, Long> recordsPerCycle = new ConcurrentSkipListMap<>();
    private final long maxRequestBytes;
    private volatile long deletedByAge;
    private volatile long deletedBySize;
    private volatile long deletedByReaders;
    private volatile long recordsDeleted;
    /** The reader and file of the last "held back by a reader" warning, so that it is logged once per file. */
    private String heldBackWarned;
    private final MeterRegistry registry;
    private final List<Meter> meters = new ArrayList<>();
    private final CRC32C crc = new CRC32C();
    private final Map<ByteBuffer, RingMemory> wrapped = new IdentityHashMap<>();
    private byte[] headerBytes = new byte[256];
    private ByteBuffer headerBuffer = ByteBuffer.wrap(headerBytes).order(ByteOrder.LITTLE_ENDIAN);
    private long requestsWritten;
    private long lastJournalIndex = -1;
    private long lastCheckpointNanos;
    private long lastRequestIndex = -1;
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
    private final NativeOwnerGuard guard;
    private StoreException broken;
    /** Test seam: runs inside every write, after its bytes and before its commit; a throw there rolls the write back. */
    WriteProbe probe = WriteProbe.NONE;

    private ChronicleRoutingSink(StoreConfig config, MeterRegistry registry) {
        this.config = config;
        this.registry = registry;
        this.guard = new NativeOwnerGuard("routing store " + config.dir());
        this.journalSpace = new Preallocation(config.journalDir(), journalBytes);
        this.requestSpace = new Preallocation(config.requestsDir(), requestBytes);
        this.shape = config.shape();
        this.rowBytes = shape.rowBytes();
        StoreManifest m = StoreManifest.openOrCreate(config.dir(), shape, config.slotCapacity(), config.rollCycle());
        // a store keeps the roll cycle it was created with (Chronicle's metadata would override another one anyway)
        RollCycle cycle = m.rollCycle() != null ? m.rollCycle() : config.rollCycle();
        SlotStore slots = new SlotStore(shape, m.slotCapacity());
        SingleChronicleQueue j = null;
        SingleChronicleQueue r = null;
        try {
            j = StoreQueues.writable(config.journalDir(), journalFiles, "journal", config.journalBlockSize(), cycle);
            r = StoreQueues.writable(config.requestsDir(), requestFiles, "request", config.requestBlockSize(), cycle);
            if (m.rollCycle() == null) {
                // a store made before the manifest recorded it: record the cycle the queues use, for read-only readers
                m = m.withRollCycle(r.rollCycle());
                m.write(config.dir());
            }
            this.manifest = m;
            this.store = slots;
            this.journal = j;
            this.requests = r;
            long start = System.nanoTime();
            long[] replayed = replayJournal();
            long records = scanRequests();
            StoreCheckpoint acknowledged = StoreCheckpoint.read(config.dir());
            List<String> losses = new ArrayList<>();
            String lost = StoreCheckpoint.lost("journal", config.journalDir(), lastJournalIndex, acknowledged.journalLastIndex());
            if (lost != null) {
                losses.add(lost);
            }
            lost = StoreCheckpoint.lost("request queue", config.requestsDir(), lastRequestIndex, acknowledged.requestsLastIndex());
            if (lost != null) {
                losses.add(lost);
            }
            this.recovery = new RecoveryReport(replayed[0], replayed[1], replayed[2], replayed[3], round, replayed[4], records,
                    replayed[5], replayed[6], (System.nanoTime() - start) / 1_000_000, losses);
            for (String line : losses) {
                LOG.log(System.Logger.Level.WARNING, line);
            }
            this.maxRequestBytes = resolveMaxRequestBytes();
            new StoreCheckpoint(lastJournalIndex, lastRequestIndex).write(config.dir());
            lastCheckpointNanos = System.nanoTime();
            if (registry != null) {
                registerMeters(registry);
            }
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
        return new ChronicleRoutingSink(config, null);
    }

    /**
     * Opens the store as {@link #open(StoreConfig)} does, and registers its meters in {@code registry} (removed again
     * by {@link #close}):
     * <ul>
     *   <li>{@code r3.store.bytes} (gauge, bytes), tagged {@code queue=journal} and {@code queue=requests}: what the
     *       queue's files take on disk (allocated bytes, as {@code du} counts them; kept up to date by the writer as
     *       it allocates and deletes, so reading it costs a field read);</li>
     *   <li>{@code r3.store.files.deleted} (counter), tagged {@code reason=age}, {@code reason=size} and
     *       {@code reason=readers}: request files retention deleted since the store was opened.</li>
     * </ul>
     */
    public static ChronicleRoutingSink open(StoreConfig config, MeterRegistry registry) {
        return new ChronicleRoutingSink(config, java.util.Objects.requireNonNull(registry, "registry"));
    }

    private void registerMeters(MeterRegistry r) {
        meters.add(Gauge.builder("r3.store.bytes", journalBytes, QueueBytes::total).baseUnit("bytes")
                .description("bytes the store's queue files take on disk").tag("queue", "journal").register(r));
        meters.add(Gauge.builder("r3.store.bytes", requestBytes, QueueBytes::total).baseUnit("bytes")
                .description("bytes the store's queue files take on disk").tag("queue", "requests").register(r));
        meters.add(FunctionCounter.builder("r3.store.files.deleted", this, s -> s.deletedByAge)
                .description("request files deleted by retention").tag("reason", "age").register(r));
        meters.add(FunctionCounter.builder("r3.store.files.deleted", this, s -> s.deletedBySize)
                .description("request files deleted by retention").tag("reason", "size").register(r));
        meters.add(FunctionCounter.builder("r3.store.files.deleted", this, s -> s.deletedByReaders)
                .description("request files deleted by retention").tag("reason", "readers").register(r));
    }

    /** The request queue's size limit: the configured one, or half of what it could take now. */
    private long resolveMaxRequestBytes() {
        if (config.maxRequestBytes() != StoreConfig.HALF_OF_FREE_SPACE) {
            return config.maxRequestBytes();
        }
        long usable;
        try {
            usable = Files.getFileStore(config.dir()).getUsableSpace();
        } catch (IOException e) {
            throw new StoreException(config.dir(), "cannot tell the free space (for the request queue's default size limit)", e);
        }
        long limit = Math.max(1, (usable + requestBytes.total()) / 2);
        LOG.log(System.Logger.Level.DEBUG, () -> config.requestsDir() + ": request files limited to " + limit
                + " bytes (half of the free space at open; StoreConfig.withMaxRequestBytes)");
        return limit;
    }

    /**
     * What the store takes on disk and what retention deleted since it was opened. Cheap (no file access); any
     * thread.
     */
    public StoreUsage usage() {
        return new StoreUsage(journalBytes.total(), requestBytes.total(), maxRequestBytes, deletedByAge, deletedBySize, deletedByReaders,
                recordsDeleted);
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
                                for (int t = 0; t < n; t++) {
                                    int slot = b.getInt();
                                    if (slot < -1 || slot >= store.slotCapacity()) {
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
        } catch (RuntimeException | AssertionError | InternalError e) {
            // Chronicle's own checks of a damaged file (a cut header, a length past the end of the file)
            throw new StoreException(path, "cannot read the journal (damaged or truncated queue file)", e);
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
                    recordsPerCycle.merge(cycle, 1L, Long::sum);
                    RequestRecords.readChecked(in, path, dc.index(), header);
                    RequestRecords.Header h = header[0];
                    lastRequestIndex = dc.index();
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
        guard.enter("scatter");
        try {
            return doScatter(step);
        } finally {
            guard.exit();
        }
    }

    private int doScatter(CapturedStep step) {
        int n = step.tokenCount();
        if (n > config.maxStepTokens()) {
            throw new IllegalArgumentException("step " + step.stepId() + ": tokenCount=" + n + " exceeds the store's maxStepTokens="
                    + config.maxStepTokens() + " (StoreConfig.withLimits)");
        }
        long bytes = 13L + 4L * n + (long) n * rowBytes + RecordFormat.CRC_BYTES;
        prepareWrite(bytes);
        RingMemory ring = wrapped.get(step.memory());
        if (ring == null) {
            if (wrapped.size() > 256) {
                wrapped.clear();
            }
            ring = new RingMemory(BytesStore.wrap(step.memory()), step.memory().duplicate());
            wrapped.put(step.memory(), ring);
        }
        ByteBuffer ringView = ring.view();
        BytesStore<?, ByteBuffer> ringBytes = ring.bytes();
        ByteBuffer head = header(13);
        head.put(RecordFormat.STEP).putLong(step.stepId()).putInt(n);
        crc.reset();
        crc.update(headerBytes, 0, head.position());
        ringView.limit(step.slotsOffset() + 4 * n).position(step.slotsOffset());
        crc.update(ringView);
        ringView.limit(step.rowOffset(0) + n * rowBytes).position(step.rowOffset(0));
        crc.update(ringView);
        try (DocumentContext dc = journalAppender.writingDocument()) {
            try {
                Bytes<?> b = dc.wire().bytes();
                journalSpace.ensure(journalAppender.cycle(), b, bytes);
                b.write(headerBytes, 0, head.position());
                b.write(ringBytes, step.slotsOffset(), 4L * n);
                b.write(ringBytes, step.rowOffset(0), (long) n * rowBytes);
                b.writeInt((int) crc.getValue());
                probe.beforeCommit(config.journalDir(), RecordFormat.STEP);
            } catch (Throwable e) {
                dc.rollbackOnClose();
                throw writeFailed(journalSpace, e);
            }
        }
        lastJournalIndex = journalAppender.lastIndexAppended();
        int stored = store.scatter(step);
        checkpointIfDue();
        return stored;
    }

    @Override
    public void finish(RequestFinished request) {
        guard.enter("finish");
        try {
            doFinish(request);
        } finally {
            guard.exit();
        }
    }

    private void doFinish(RequestFinished request) {
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
        int headerMax = RequestRecords.maxHeaderBytes(RecordFormat.maxUtf8(id));
        prepareWrite(headerMax + (long) total + RecordFormat.CRC_BYTES);
        if (gatherBytes.length < total) {
            gatherBytes = new byte[Math.max(total, gatherBytes.length * 2)];
            gatherBuffer = ByteBuffer.wrap(gatherBytes).order(ByteOrder.LITTLE_ENDIAN);
        }
        store.gatherInto(request, gatherBuffer);
        ByteBuffer head = header(headerMax);
        RequestRecords.putHeader(head, id, round, shape, n);
        crc.reset();
        crc.update(headerBytes, 0, head.position());
        crc.update(gatherBytes, 0, total);
        try (DocumentContext dc = requestAppender.writingDocument()) {
            try {
                Bytes<?> b = dc.wire().bytes();
                requestSpace.ensure(requestAppender.cycle(), b, head.position() + (long) total + RecordFormat.CRC_BYTES);
                b.write(headerBytes, 0, head.position());
                b.write(gatherBytes, 0, total);
                b.writeInt((int) crc.getValue());
                probe.beforeCommit(config.requestsDir(), WriteProbe.REQUEST);
            } catch (Throwable e) {
                dc.rollbackOnClose();
                throw writeFailed(requestSpace, e);
            }
        }
        long requestIndex = requestAppender.lastIndexAppended();
        lastRequestIndex = requestIndex;
        recordsPerCycle.merge(requestAppender.cycle(), 1L, Long::sum);
        finishedThisRound.add(id);
        requestsWritten++;
        head = header(1 + 4 + RecordFormat.maxUtf8(id) + 12);
        head.put(RecordFormat.FINISH);
        putId(head, id);
        head.putInt(n).putLong(requestIndex);
        appendJournal(head, RecordFormat.FINISH);
        sweepIfRolled();
        checkpointIfDue();
    }

    @Override
    public void abort(RequestAborted request) {
        guard.enter("abort");
        try {
            doAbort(request);
        } finally {
            guard.exit();
        }
    }

    private void doAbort(RequestAborted request) {
        String id = request.requestId();
        prepareWrite(9L + RecordFormat.maxUtf8(id));
        ByteBuffer head = header(5 + RecordFormat.maxUtf8(id));
        head.put(RecordFormat.ABORT);
        putId(head, id);
        appendJournal(head, RecordFormat.ABORT);
    }

    @Override
    public void move(SlotsMoved move) {
        guard.enter("move");
        try {
            doMove(move);
        } finally {
            guard.exit();
        }
    }

    private void doMove(SlotsMoved move) {
        int[] src = move.sourceSlots();
        int[] dst = move.destinationSlots();
        prepareWrite(9L + 8L * src.length);
        ByteBuffer head = header(5 + 8 * src.length);
        head.put(RecordFormat.MOVE).putInt(src.length);
        for (int s : src) {
            head.putInt(s);
        }
        for (int d : dst) {
            head.putInt(d);
        }
        appendJournal(head, RecordFormat.MOVE);
        // journal, then apply (as scatter): the index never holds an effect the journal lacks
        store.move(move);
    }

    @Override
    public void clear(RoundCleared clear) {
        guard.enter("clear");
        try {
            doClear(clear);
        } finally {
            guard.exit();
        }
    }

    private void doClear(RoundCleared clear) {
        prepareWrite(21);
        ByteBuffer head = header(17);
        head.put(RecordFormat.CLEAR).putLong(round + 1).putLong(clear.round());
        appendJournal(head, RecordFormat.CLEAR);
        round++;
        store.clear();
        finishedThisRound.clear();
        lastClearCycle = journalAppender.cycle();
        sweepJournal();
    }

    /** Writes the checkpoint (the indexes of the last excerpts this sink committed or recovered) once a second. */
    private void checkpointIfDue() {
        if (System.nanoTime() - lastCheckpointNanos >= CHECKPOINT_NANOS) {
            checkpoint();
            if (requestAppender != null && requestBytes.total() > maxRequestBytes) {
                // over the size limit since the last roll (a named reader held files back and may have read on)
                sweepRequests(requestAppender.cycle());
            }
        }
    }

    private void checkpoint() {
        new StoreCheckpoint(lastJournalIndex, lastRequestIndex).write(config.dir());
        lastCheckpointNanos = System.nanoTime();
    }

    /** A ring slot's host memory, wrapped once: for Chronicle's bulk copy, and a private view for the checksum. */
    private record RingMemory(BytesStore<?, ByteBuffer> bytes, ByteBuffer view) {
    }

    /** The reusable header buffer, cleared, holding at least {@code bytes}. */
    private ByteBuffer header(int bytes) {
        if (headerBytes.length < bytes) {
            headerBytes = new byte[Math.max(bytes, headerBytes.length * 2)];
            headerBuffer = ByteBuffer.wrap(headerBytes).order(ByteOrder.LITTLE_ENDIAN);
        }
        headerBuffer.clear();
        return headerBuffer;
    }

    private static void putId(ByteBuffer head, String id) {
        int lengthAt = head.position();
        head.putInt(0);
        head.putInt(lengthAt, RecordFormat.putUtf8(head, id));
    }

    /** Appends the excerpt built in {@code head} and its checksum to the journal; rolls back and throws on failure. */
    private void appendJournal(ByteBuffer head, byte kind) {
        crc.reset();
        crc.update(headerBytes, 0, head.position());
        try (DocumentContext dc = journalAppender.writingDocument()) {
            try {
                Bytes<?> b = dc.wire().bytes();
                journalSpace.ensure(journalAppender.cycle(), b, head.position() + RecordFormat.CRC_BYTES);
                b.write(headerBytes, 0, head.position());
                b.writeInt((int) crc.getValue());
                probe.beforeCommit(config.journalDir(), kind);
            } catch (Throwable e) {
                dc.rollbackOnClose();
                throw writeFailed(journalSpace, e);
            }
        }
        lastJournalIndex = journalAppender.lastIndexAppended();
    }

    /**
     * The rows the slot index holds now at {@code slots}, as a request named {@code "slots"} (a copy). For tools and
     * tests; call it from the sink thread or while no pipeline runs.
     *
     * @throws IllegalStateException when a slot holds no routing, or the sink is closed
     */
    public RequestRouting read(int... slots) {
        guard.enter("read");
        try {
            return new RequestRouting("slots", shape, slots.length, store.gather(new RequestFinished("slots", slots)));
        } finally {
            guard.exit();
        }
    }

    /** The store's round: clears so far. */
    public long round() {
        return round;
    }

    private void prepareWrite(long bytes) {
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
     * refuses every later write, so nothing after it is acknowledged. The message names the queue file written.
     */
    private StoreException writeFailed(Preallocation space, Throwable e) {
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

    private void sweepIfRolled() {
        int cycle = requestAppender.cycle();
        if (cycle != lastSweptCycle) {
            lastSweptCycle = cycle;
            sweepRequests(cycle);
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

    /** Warns (once per reader and file) that the request queue stays over its size limit because of a named reader. */
    private void heldBack(String reader, File file) {
        String key = reader + "@" + file;
        if (!key.equals(heldBackWarned)) {
            heldBackWarned = key;
            LOG.log(System.Logger.Level.WARNING, config.requestsDir() + ": the request queue takes " + requestBytes.total()
                    + " bytes, over its size limit of " + maxRequestBytes + " (maxRequestBytes), because named reader '" + reader
                    + "' has not read past " + file.getName() + " yet; it is kept until the reader reads on (retainForReaders wins)");
        }
    }

    /** Deletes journal cycles before the one holding the last clear: recovery never needs them. */
    private void sweepJournal() {
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

    /** Called inside every store write after its bytes were written and before it commits (fault injection in tests). */
    interface WriteProbe {
        /** The probe that does nothing. */
        WriteProbe NONE = (queue, kind) -> { };
        /** The kind of a request record (journal excerpts use their {@link RecordFormat} type). */
        byte REQUEST = 0;

        void beforeCommit(Path queue, byte kind);
    }

    /**
     * Closes the queues and frees the slot index: waits for a running sink call (on another thread) to finish first;
     * later sink calls throw {@link IllegalStateException} naming the store. Idempotent and safe to call from several
     * threads at once (one of them closes).
     */
    @Override
    public void close() {
        if (!guard.close()) {
            return;
        }
        for (Meter m : meters) {
            registry.remove(m);
        }
        try {
            if (broken == null) {
                checkpoint();
            }
        } finally {
            journalSpace.close();
            requestSpace.close();
            journal.close();
            requests.close();
            store.close();
        }
    }
}
