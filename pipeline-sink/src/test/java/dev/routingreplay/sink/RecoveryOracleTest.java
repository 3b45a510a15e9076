package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.sink.MissingReason;
import dev.routingreplay.core.testing.HostEngine;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import reactor.core.publisher.Flux;

/**
 * Recovery rebuilds exactly the slot index the writer had: {@link CrashWorkload}'s plan (steps, prefix hits, moves,
 * swaps, clears) is cut after a given number of journaled ops, the store reopened, and every slot compared with the
 * oracle. The kill -9 variant is {@link KillRecoveryTest}; this one is deterministic, so a recovery that ignores any
 * record kind fails it every time.
 */
class RecoveryOracleTest {
    @TempDir
    Path dir;

    /** The plan's ops from request 0 up to (and including) the {@code journaled}th journaled op. */
    private static List<CrashWorkload.Op> planUpTo(long journaled) {
        List<CrashWorkload.Op> ops = new ArrayList<>();
        long left = journaled;
        for (long r = 0; left > 0; r++) {
            for (CrashWorkload.Op op : CrashWorkload.ops(r)) {
                if (left == 0) {
                    break;
                }
                ops.add(op);
                if (op.journaled()) {
                    left--;
                }
            }
        }
        return ops;
    }

    private StoreConfig config() {
        return StoreConfig.of(dir, CrashWorkload.SHAPE, CrashWorkload.SLOTS);
    }

    private void write(List<CrashWorkload.Op> ops) {
        HostDevice device = new HostDevice();
        try (HostEngine engine = new HostEngine(device, CrashWorkload.SHAPE, 8); ChronicleRoutingSink sink = ChronicleRoutingSink.open(config())) {
            CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(4).maxTokensPerStep(8).build();
            Flux.fromIterable(ops).map(op -> CrashWorkload.event(op, engine)).transform(pipeline).blockLast(Duration.ofSeconds(60));
        }
    }

    /**
     * Cut points (13 journaled ops every 4 requests): 7 ends on request 2's move (its moved rows only in the spare
     * block); 20 on request 6's move; 38 on request 11's swap; 30 on request 9's prefix-hit step; 417 just after the
     * first clear; 500 and 1500 in later rounds, with every kind of op since the last clear.
     */
    @ParameterizedTest
    @ValueSource(longs = {7, 20, 30, 38, 417, 500, 1500})
    void recoveryRebuildsExactlyTheWritersSlotIndex(long journaled) {
        List<CrashWorkload.Op> ops = planUpTo(journaled);
        write(ops);
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config())) {
            RecoveryReport report = sink.recovery();
            assertEquals(journaled, report.records(), report.describe());
            assertEquals(journaled, CrashWorkload.Oracle.recordsBefore(report.round() * CrashWorkload.ROUND) + report.recordsAfterClear(),
                    report.describe());
            int compared = CrashWorkload.Oracle.recovered(report.round(), report.recordsAfterClear()).check(sink);
            assertTrue(compared > 0 || report.recordsAfterClear() == 0, "compared " + compared + " slots");
        }
    }

    @Test
    void theCutPointsEndOnTheOpsTheyName() {
        assertTrue(last(7) instanceof CrashWorkload.Move m && m.src().length == 4, String.valueOf(last(7)));
        assertTrue(last(20) instanceof CrashWorkload.Move m && m.src().length == 4, String.valueOf(last(20)));
        assertTrue(last(38) instanceof CrashWorkload.Move m && m.src().length == 8, String.valueOf(last(38)));
        assertTrue(last(30) instanceof CrashWorkload.Step s && s.request() == 9 && s.slots().length == 4, String.valueOf(last(30)));
        assertTrue(last(417) instanceof CrashWorkload.Clear, String.valueOf(last(417)));
    }

    private static CrashWorkload.Op last(long journaled) {
        List<CrashWorkload.Op> ops = planUpTo(journaled);
        return ops.get(ops.size() - 1);
    }

    @Test
    void aMoveWhoseJournalWriteFailsLeavesTheIndexAsTheJournalSaysAndFailsThePipeline() {
        HostDevice device = new HostDevice();
        try (HostEngine engine = new HostEngine(device, CrashWorkload.SHAPE, 8); ChronicleRoutingSink sink = ChronicleRoutingSink.open(config())) {
            CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(4).maxTokensPerStep(8).build();
            // request 2: step 4 writes its low half, then the move to the spare block fails in the journal
            List<CrashWorkload.Op> ops = CrashWorkload.ops(2);
            sink.probe = (queue, kind) -> {
                if (kind == RecordFormat.MOVE) {
                    throw new IllegalStateException("injected journal failure");
                }
            };
            Flux<EngineEvent> events = Flux.fromIterable(ops).map(op -> CrashWorkload.event(op, engine));
            Exception e = assertThrows(Exception.class, () -> events.transform(pipeline).blockLast(Duration.ofSeconds(10)));
            assertTrue(String.valueOf(e.getCause()).contains("injected journal failure"), String.valueOf(e));
            CrashWorkload.Oracle oracle = new CrashWorkload.Oracle();
            oracle.apply(ops.get(1)); // the step; the move never happened
            assertEquals(4, oracle.check(sink), "the index holds the step, not the failed move");
            assertEquals(MissingReason.NEVER_WRITTEN, sink.read(CrashWorkload.spare(2, 0)).missingReason(0), "the spare slot was never written");
        }
        try (ChronicleRoutingSink reopened = ChronicleRoutingSink.open(config())) {
            assertEquals(0, reopened.recovery().moves(), reopened.recovery().describe());
        }
    }

    @Test
    void aSwapIsOneMove() {
        List<CrashWorkload.Op> ops = CrashWorkload.ops(3);
        SlotsMoved swap = (SlotsMoved) CrashWorkload.event(ops.get(3), null);
        assertEquals(8, swap.sourceSlots().length);
        assertEquals(swap.sourceSlots()[0], swap.destinationSlots()[4]);
    }
}
