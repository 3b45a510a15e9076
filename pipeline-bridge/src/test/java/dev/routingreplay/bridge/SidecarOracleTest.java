package dev.routingreplay.bridge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.bridge.testing.FakeEngine;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * (a) A long randomized rollout through the real socket stores exactly what the oracle computed; (h) GOODBYE is
 * answered FAREWELL with the counts the engine sent; (b) with the engine overwriting each buffer with garbage the
 * moment its CONSUMED arrives, the stored data is still exact.
 */
class SidecarOracleTest {
    @TempDir
    Path tmp;

    @ParameterizedTest(name = "seed {0}: {1} layers top {2} of {3}, ids {4} B, slots {5} B, {6} buffers, ring {7}, garbage {8}, "
            + "slots in STEP_SLOTS {9}")
    @CsvSource({
        "1, 3, 2, 300, 8, 8, 4, 4, false, false",
        "2, 4, 8, 128, 4, 4, 2, 2, false, false",
        "3, 2, 4, 256, 8, 4, 1, 1, false, false",
        "4, 3, 2, 64, 4, 8, 2, 4, true, false",
        "5, 2, 2, 200, 8, 8, 3, 1, true, false",
        "6, 3, 2, 300, 8, 8, 4, 4, false, true",
        "7, 2, 4, 64, 4, 4, 2, 1, true, true",
        "8, 2, 2, 200, 8, 4, 1, 2, true, true",
    })
    void everyFinishedRequestReadsBackWhatTheEngineWrote(long seed, int layers, int topK, int experts, int idBytes, int slotBytes,
            int buffers, int ringDepth, boolean garbage, boolean slotsInSteps) {
        FakeEngine.Spec spec = new FakeEngine.Spec(layers, topK, experts, idBytes, slotBytes, 64, buffers);
        try (Oracle oracle = new Oracle(seed, spec, 4000);
                Sidecars sidecar = new Sidecars(tmp, oracle.slotCapacity(), ringDepth);
                FakeEngine engine = FakeEngine.connect(sidecar.socket)) {
            CompletableFuture<SessionSummary> end = sidecar.nextSession();
            if (slotsInSteps) {
                engine.sendingSlotsInSteps();
            }
            SidecarMessage.Welcome welcome = engine.welcome(spec, tmp, "oracle-" + seed);
            assertEquals(slotsInSteps ? 2 : 1, welcome.version(), "WELCOME answers with the engine's version");
            assertEquals("memory", welcome.store());
            if (garbage) {
                engine.overwriteAfterConsumed();
            }
            oracle.play(engine, Long.MAX_VALUE);
            SidecarMessage bye = engine.goodbye();
            assertEquals(new SidecarMessage.Farewell(engine.sentSteps(), engine.sentTokens(), engine.sentFinished()), bye);
            assertTrue(engine.awaitClosedBySidecar(), "closed after FAREWELL");
            SessionSummary summary = Sidecars.await(end);
            assertEquals(SessionSummary.Outcome.FAREWELL, summary.outcome(), summary::describe);
            assertEquals(engine.sentSteps(), summary.steps());
            assertTrue(oracle.scenario.steps() >= 4000 && oracle.scenario.swapsOut > 0 && oracle.scenario.aborts > 0
                    && oracle.scenario.clears > 0 && oracle.scenario.paddingTokens > 0 && oracle.scenario.prefixHits > 0,
                    "every feature was exercised");
            assertTrue(oracle.scenario.expected().size() > 100, "finished: " + oracle.scenario.expected().size());
            assertEquals(oracle.scenario.expected().size(), sidecar.memorySink().finishedIds().size());
            oracle.assertStored(sidecar.memorySink());
            assertEquals(0, sidecar.device.liveBytes(), "the session's ring is freed");
            assertTrue(sidecar.log.stream().anyMatch(l -> l.contains("ended: farewell")), sidecar.log::toString);
        }
    }
}
