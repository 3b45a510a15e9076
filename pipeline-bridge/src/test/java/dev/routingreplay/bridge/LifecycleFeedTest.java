package dev.routingreplay.bridge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.bridge.testing.FakeEngine;
import dev.routingreplay.core.sink.MissingReason;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Every lifecycle message reaches the pipeline, in order with the steps: each one's effect shows in the store. */
class LifecycleFeedTest {
    private static final FakeEngine.Spec SPEC = new FakeEngine.Spec(2, 2, 16, 4, 8, 8, 2);

    @TempDir
    Path tmp;

    private static void step(FakeEngine engine, int tokens, int firstSlot) {
        engine.step(tokens, (routing, slots) -> {
            for (int t = 0; t < tokens; t++) {
                slots.putLong(t * 8, firstSlot + t);
            }
        });
    }

    @Test
    void roundClearedEmptiesTheStoreAndAStepOfMaxTokensIsAccepted() {
        try (Sidecars sidecar = new Sidecars(tmp, 64, 2); FakeEngine engine = FakeEngine.connect(sidecar.socket)) {
            engine.welcome(SPEC, tmp, "clearing");
            step(engine, SPEC.maxTokens(), 0);
            engine.roundCleared(1);
            assertEquals(new SidecarMessage.Farewell(1, SPEC.maxTokens(), 0), engine.goodbye());
            assertEquals(MissingReason.STALE_ROUND, sidecar.memorySink().read(0).missingReason(0), "the round's slots were cleared");
        }
    }

    @Test
    void aFinishOfAnAbortedRequestIsAnErrorOfThatRequestOnlyAndTheSessionGoesOn() {
        try (Sidecars sidecar = new Sidecars(tmp, 64, 2); FakeEngine engine = FakeEngine.connect(sidecar.socket).speakingVersion3()) {
            engine.welcome(SPEC, tmp, "aborting");
            engine.admitted("a");
            step(engine, 2, 0);
            engine.aborted("a");
            engine.finished("a", new int[] {0, 1});
            engine.admitted("b");
            step(engine, 2, 2);
            engine.finished("b", new int[] {2, 3});
            engine.aborted("ghost");
            assertEquals(new SidecarMessage.Farewell(2, 4, 2), engine.goodbye());
            List<SidecarMessage.RequestError> errors = engine.requestErrors();
            assertEquals(2, errors.size(), errors::toString);
            assertEquals(new SidecarMessage.RequestError(RequestErrorCode.NOT_LIVE.code(), "a", "request id 'a' finished but not live: never "
                    + "admitted, or already finished or aborted (admit it again to record it again)"), errors.get(0));
            assertEquals("ghost", errors.get(1).requestId());
            assertEquals(List.of("b"), sidecar.memorySink().finishedIds());
        }
    }

    @Test
    void anOlderEngineGetsNoRequestErrorButItsSessionGoesOnToo() {
        try (Sidecars sidecar = new Sidecars(tmp, 64, 2); FakeEngine engine = FakeEngine.connect(sidecar.socket)) {
            engine.welcome(SPEC, tmp, "version-1");
            engine.finished("never", new int[] {0});
            engine.admitted("b", 1); // ADMITTED_CACHED is understood from any version
            step(engine, 2, 2);
            engine.finished("b", new int[] {2, 3});
            assertEquals(new SidecarMessage.Farewell(1, 2, 2), engine.goodbye());
            assertTrue(engine.requestErrors().isEmpty());
            assertEquals(List.of("b"), sidecar.memorySink().finishedIds());
        }
    }
}
