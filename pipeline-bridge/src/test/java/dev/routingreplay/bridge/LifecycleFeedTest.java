package dev.routingreplay.bridge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.bridge.testing.FakeEngine;
import java.nio.file.Path;
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
            assertThrows(IllegalStateException.class, () -> sidecar.memorySink().read(0), "the round's slots were cleared");
        }
    }

    @Test
    void anAbortedRequestCannotFinish() {
        try (Sidecars sidecar = new Sidecars(tmp, 64, 2); FakeEngine engine = FakeEngine.connect(sidecar.socket)) {
            engine.welcome(SPEC, tmp, "aborting");
            engine.admitted("a");
            step(engine, 2, 0);
            engine.aborted("a");
            engine.finished("a", new int[] {0, 1});
            SidecarMessage.Failed failed = engine.expectFailed();
            assertEquals(FailureCode.PIPELINE.code(), failed.code(), failed::toString);
            assertTrue(failed.message().contains("a"), failed.message());
        }
    }
}
