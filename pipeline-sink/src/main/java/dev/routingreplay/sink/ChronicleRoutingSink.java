package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.memory.NativeOwnerGuard;
import dev.routingreplay.core.sink.MissingReason;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.sink.RoutingSink;
import dev.routingreplay.core.sink.SlotStore;
import io.micrometer.core.instrument.MeterRegistry;
import java.io.File;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentSkipListMap;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueue;

/**
 * The durable sink: a Chronicle Queue journal (one excerpt per event, the source of truth), an in-memory slot index
 * rebuilt from the journal on open, and a request queue with one self-describing record per finished request,
 * which trainers tail with {@link RoutingReplay}.
 *
 * <p>Guarantees: when a method returns, its excerpt is in the memory-mapped queue file and survives {@code kill -9}
 * of the process (not a power loss); a write that fails is rolled back, never left half-written; a finish of a
 * request already recorded in this round (admitted again: a retry, a reused id) is stored as a new record that
 * supersedes the earlier one for by-id reads, counted in {@link #supersededFinishes()} and logged; writes fail with a
 * {@link StoreException} naming the path when free space falls below {@link StoreConfig#minFreeBytes()}, and naming
 * the queue file when the disk fills before the bytes a write will touch exist (they are allocated before the mapped
 * write, see {@link Preallocation}), never with a SIGBUS in the middle of an excerpt.
 *
 * <p>Every event is journalled first ({@link JournalWriter}) and then applied to the slot index, so the index never
 * holds an effect the journal lacks; a finish writes its request record ({@link RequestWriter}) before its journal
 * excerpt; {@link EventRecorder} is that write path. The other jobs live in their own classes: {@link JournalRecovery} (open), {@link WriteSpace} (free space,
 * preallocation, fatal failures), {@link RetentionSweeper} (deleting files), {@link StoreQueues} (opening queues).
 *
 * <p>Threading: one thread at a time (the pipeline's sink thread), like every {@link RoutingSink}. {@link #close} may
 * be called from any thread, also concurrently with itself or with a running sink call: it waits for a running call
 * to finish (so a write is never cut off by unmapping its file), and every later call throws an
 * {@link IllegalStateException} naming the store, never a crash.
 */
public final class ChronicleRoutingSink implements RoutingSink, AutoCloseable {
    private final StoreConfig config;
    private final RoutingShape shape;
    private final SlotStore store;
    private final StoreQueues.Writer queues;
    private final QueueBytes journalBytes = new QueueBytes();
    private final QueueBytes requestBytes = new QueueBytes();
    private final WriteSpace space;
    private final RetentionSweeper retention;
    private final EventRecorder events;
    private final CheckpointWriter checkpoints;
    private final RecoveryReport recovery;
    private final StoreMeters meters;
    private final NativeOwnerGuard guard;
    /** Test seam: runs inside every write, after its bytes and before its commit; a throw there rolls the write back. */
    WriteProbe probe = WriteProbe.NONE;

    private ChronicleRoutingSink(StoreConfig config, MeterRegistry registry) {
        this.config = config;
        this.guard = new NativeOwnerGuard("routing store " + config.dir());
        this.space = new WriteSpace(config, journalBytes, requestBytes);
        this.shape = config.shape();
        Map<Integer, File> journalFiles = new ConcurrentSkipListMap<>();
        Map<Integer, File> requestFiles = new ConcurrentSkipListMap<>();
        this.queues = StoreQueues.writer(config, journalFiles, requestFiles);
        SingleChronicleQueue j = queues.journal();
        SingleChronicleQueue r = queues.requests();
        SlotStore slots = null;
        try {
            slots = new SlotStore(shape, queues.manifest().slotCapacity());
            this.store = slots;
            this.retention = new RetentionSweeper(config, j, r, journalFiles, requestFiles, journalBytes, requestBytes,
                    StoreCheckpoint.files(config.dir(), r.rollCycle()));
            Set<String> finishedThisRound = new HashSet<>();
            JournalRecovery recovered = new JournalRecovery(config, slots, j, r, journalBytes, requestBytes, retention, finishedThisRound);
            this.recovery = recovered.recover();
            JournalWriter journalWriter = new JournalWriter(j, config.journalDir(), space, recovered.lastJournalIndex());
            RequestWriter requestWriter = new RequestWriter(r, config.requestsDir(), space, slots, shape, recovered.lastRequestIndex(),
                    recovered.lastRequestOrdinal());
            retention.resolveLimit();
            this.checkpoints = new CheckpointWriter(config.dir(), journalWriter, requestWriter, retention.files());
            checkpoints.write();
            retention.follow(requestWriter, checkpoints::write);
            this.events = new EventRecorder(config, slots, journalWriter, requestWriter, space, retention, checkpoints, finishedThisRound,
                    recovered.round());
            this.meters = registry == null ? null : new StoreMeters(registry, journalBytes, requestBytes, retention, slots, this);
        } catch (RuntimeException | Error e) {
            if (slots != null) {
                slots.close();
            }
            queues.close();
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
     *       {@code reason=readers}: request files retention deleted since the store was opened;</li>
     *   <li>{@code r3.store.rows.missing} (counter), tagged {@code reason=} each {@link MissingReason} label: missing rows
     *       written into request records since the store was opened;</li>
     *   <li>{@code r3.store.records.superseded} (counter): finishes of an id already recorded in the round.</li>
     * </ul>
     */
    public static ChronicleRoutingSink open(StoreConfig config, MeterRegistry registry) {
        return new ChronicleRoutingSink(config, java.util.Objects.requireNonNull(registry, "registry"));
    }

    /**
     * What the store takes on disk and what retention deleted since it was opened. Cheap (no file access); any
     * thread.
     */
    public StoreUsage usage() {
        return new StoreUsage(journalBytes.total(), requestBytes.total(), retention.maxRequestBytes(), retention.deletedByAge(),
                retention.deletedBySize(), retention.deletedByReaders(), retention.recordsDeleted());
    }

    /** What opening the store recovered. */
    public RecoveryReport recovery() {
        return recovery;
    }

    /** The store's folder. */
    public Path dir() {
        return config.dir();
    }

    /** Finishes of a request already recorded in this round: each stored as a new record that supersedes the earlier one. */
    public long supersededFinishes() {
        return events.supersededFinishes();
    }

    /** Pairs of moves not applied because a slot was out of range. */
    public long badMovePairs() {
        return events.badMovePairs();
    }

    @Override
    public RoutingShape shape() {
        return shape;
    }

    @Override
    public int slotCapacity() {
        return queues.manifest().slotCapacity();
    }

    @Override
    public int scatter(CapturedStep step) {
        guard.enter("scatter");
        try {
            return events.scatter(step, probe);
        } finally {
            guard.exit();
        }
    }

    @Override
    public void finish(RequestFinished request) {
        guard.enter("finish");
        try {
            events.finish(request, probe);
        } finally {
            guard.exit();
        }
    }

    @Override
    public void admit(RequestAdmitted request) {
        guard.enter("admit");
        try {
            store.admit(request.requestId(), request.cachedTokens()); // no row changes: nothing to journal
        } finally {
            guard.exit();
        }
    }

    @Override
    public void abort(RequestAborted request) {
        guard.enter("abort");
        try {
            events.abort(request, probe);
        } finally {
            guard.exit();
        }
    }

    @Override
    public void move(SlotsMoved move) {
        guard.enter("move");
        try {
            events.move(move, probe);
        } finally {
            guard.exit();
        }
    }

    @Override
    public void clear(RoundCleared clear) {
        guard.enter("clear");
        try {
            events.clear(clear, probe);
        } finally {
            guard.exit();
        }
    }

    /** The run completed: takes the store's {@link IncompleteMark} off (a completed run of no request is complete too). */
    @Override
    public void flush() {
        guard.enter("flush");
        try {
            checkpoints.completed();
        } finally {
            guard.exit();
        }
    }

    /**
     * The rows the slot index holds now at {@code slots}, as a request named {@code "slots"} (a copy): rows of the
     * current round, the others missing with their reason. For tools and tests; call it from the sink thread or while
     * no pipeline runs.
     *
     * @throws IllegalStateException when the sink is closed
     */
    public RequestRouting read(int... slots) {
        guard.enter("read");
        try {
            return store.read(slots);
        } finally {
            guard.exit();
        }
    }

    /** The store's round: clears so far. */
    public long round() {
        return events.round();
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
        if (meters != null) {
            meters.remove();
        }
        try {
            if (space.broken() == null) {
                checkpoints.write();
            }
        } finally {
            space.close();
            queues.close();
            store.close();
        }
    }
}
