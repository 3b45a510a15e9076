package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.sink.SlotStore;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The store's write path: every event is journalled first ({@link JournalWriter}) and then applied to the slot index,
 * so the index never holds an effect the journal lacks; a finish writes its request record ({@link RequestWriter})
 * before its journal excerpt. Before each write it refuses writes after a fatal one, moves the appenders to a new sink
 * thread and guards the free space ({@link WriteSpace}); after scatters and finishes it writes the checkpoint once a
 * second. It keeps the round, the ids finished in it, and the counts {@link ChronicleRoutingSink} reports.
 *
 * <p>Threading: the sink thread only, inside {@link ChronicleRoutingSink}'s guard. A scatter allocates nothing.
 */
final class EventRecorder {
    private static final Logger LOG = LoggerFactory.getLogger(ChronicleRoutingSink.class);
    private final StoreConfig config;
    private final RoutingShape shape;
    private final SlotStore store;
    private final JournalWriter journalWriter;
    private final RequestWriter requestWriter;
    private final WriteSpace space;
    private final RetentionSweeper retention;
    private final CheckpointWriter checkpoints;
    private final Set<String> finishedThisRound;
    private Thread owner;
    private long round;
    private long supersededFinishes;
    private long badMovePairs;

    EventRecorder(StoreConfig config, SlotStore store, JournalWriter journalWriter, RequestWriter requestWriter, WriteSpace space,
            RetentionSweeper retention, CheckpointWriter checkpoints, Set<String> finishedThisRound, long round) {
        this.config = config;
        this.shape = config.shape();
        this.store = store;
        this.journalWriter = journalWriter;
        this.requestWriter = requestWriter;
        this.space = space;
        this.retention = retention;
        this.checkpoints = checkpoints;
        this.finishedThisRound = finishedThisRound;
        this.round = round;
    }

    int scatter(CapturedStep step, ChronicleRoutingSink.WriteProbe probe) {
        int n = step.tokenCount();
        if (n > config.maxStepTokens()) {
            throw new IllegalArgumentException("step " + step.stepId() + ": tokenCount=" + n + " exceeds the store's maxStepTokens="
                    + config.maxStepTokens() + " (StoreConfig.withLimits)");
        }
        long bytes = JournalWriter.stepBytes(n, shape.rowBytes());
        prepareWrite(bytes);
        journalWriter.step(step, shape.rowBytes(), bytes, probe);
        int stored = store.scatter(step);
        checkpointIfDue();
        return stored;
    }

    void finish(RequestFinished request, ChronicleRoutingSink.WriteProbe probe) {
        String id = request.requestId();
        int n = request.seqLen();
        if (n > config.maxRequestTokens()) {
            throw new IllegalArgumentException("request " + id + ": seqLen=" + n + " exceeds the store's maxRequestTokens="
                    + config.maxRequestTokens() + " (StoreConfig.withLimits)");
        }
        prepareWrite(requestWriter.maxBytes(id, n));
        // the request record first (the journal's finish names its index), recorded once per round
        long requestIndex = requestWriter.write(request, round, probe);
        retention.recorded(requestWriter.cycle());
        if (!finishedThisRound.add(id)) {
            supersededFinishes++;
            LOG.warn("request " + id + " finished again in round " + round + ": stored as record "
                    + Long.toHexString(requestIndex) + ", which supersedes the earlier record of that id for by-id reads");
        }
        journalWriter.finish(id, n, requestIndex, probe);
        retention.sweepIfRolled(requestWriter.cycle());
        checkpointIfDue();
    }

    void abort(RequestAborted request, ChronicleRoutingSink.WriteProbe probe) {
        prepareWrite(JournalWriter.abortBytes(request.requestId()));
        journalWriter.abort(request.requestId(), probe);
        store.forget(request.requestId());
    }

    void move(SlotsMoved move, ChronicleRoutingSink.WriteProbe probe) {
        prepareWrite(JournalWriter.moveBytes(move.sourceSlots().length));
        journalWriter.move(move.sourceSlots(), move.destinationSlots(), probe);
        // journal, then apply (as scatter): the index never holds an effect the journal lacks
        badMovePairs += store.move(move);
    }

    void clear(RoundCleared clear, ChronicleRoutingSink.WriteProbe probe) {
        prepareWrite(JournalWriter.CLEAR_BYTES);
        journalWriter.clear(round + 1, clear.round(), probe);
        round++;
        store.clear();
        finishedThisRound.clear();
        retention.sweepJournal(journalWriter.cycle());
    }

    /** The store's round: clears so far. */
    long round() {
        return round;
    }

    /** Finishes of a request already recorded in this round. */
    long supersededFinishes() {
        return supersededFinishes;
    }

    /** Pairs of moves not applied because a slot was out of range. */
    long badMovePairs() {
        return badMovePairs;
    }

    /** Refuses writes after a fatal one, moves the appenders to a new sink thread, and guards the free space. */
    private void prepareWrite(long bytes) {
        space.checkNotBroken();
        Thread current = Thread.currentThread();
        if (owner != current) {
            journalWriter.claim();
            requestWriter.claim();
            owner = current;
        }
        space.reserve(bytes);
    }

    /** Writes the checkpoint once a second, and then sweeps the request queue if it is over its size limit. */
    private void checkpointIfDue() {
        if (checkpoints.writeIfDue() && requestWriter.claimed()) {
            // over the size limit since the last roll (a named reader held files back and may have read on)
            retention.sweepIfOver(requestWriter.cycle());
        }
    }
}
