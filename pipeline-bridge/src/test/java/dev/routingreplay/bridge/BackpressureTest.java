package dev.routingreplay.bridge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.bridge.testing.FakeEngine;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.testing.HeldSink;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** (c) A slow sink: the engine's CONSUMED waits grow (it measures them), nothing is lost, and memory stays bounded. */
class BackpressureTest {
    @TempDir
    Path tmp;

    /** A sink that takes {@code millis} per step. */
    static final class SlowSink extends MemoryRoutingSink {
        private final long millis;

        SlowSink(RoutingShape shape, int slots, long millis) {
            super(shape, slots);
            this.millis = millis;
        }

        @Override
        public int scatter(CapturedStep step) {
            try {
                Thread.sleep(millis);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            return super.scatter(step);
        }
    }

    @Test
    void aSlowSinkDelaysConsumedAndLosesNothing() {
        FakeEngine.Spec spec = new FakeEngine.Spec(3, 2, 64, 8, 8, 64, 4);
        int ringDepth = 2;
        long sinkMillis = 3;
        try (Oracle oracle = new Oracle(11, spec, 300);
                Sidecars sidecar = new Sidecars(tmp, ringDepth, (shape, maxTokens) -> new SlowSink(shape, 1024, sinkMillis));
                FakeEngine engine = FakeEngine.connect(sidecar.socket)) {
            engine.welcome(spec, tmp, "slow");
            long start = System.nanoTime();
            oracle.play(engine, Long.MAX_VALUE);
            assertEquals(new SidecarMessage.Farewell(engine.sentSteps(), engine.sentTokens(), engine.sentFinished()), engine.goodbye());
            long elapsed = System.nanoTime() - start;
            long steps = engine.sentSteps();
            assertTrue(elapsed >= steps * sinkMillis * 1_000_000, "the sink's pace bounds the run: " + elapsed / 1e6 + " ms");
            // at most N + ring depth + the sink stage's queue steps ahead of the sink: the rest of the time the engine waits for CONSUMED
            double waitedMs = engine.consumedWaitNanos() / 1e6;
            assertTrue(waitedMs >= (steps - 40) * sinkMillis * 0.8, "the engine waited " + waitedMs + " ms for CONSUMED over " + steps
                    + " steps of a " + sinkMillis + " ms sink");
            oracle.assertStored(sidecar.memorySink());
            assertEquals(oracle.scenario.expected().size(), sidecar.memorySink().finishedIds().size());
        }
    }

    @Test
    void whileTheSinkIsHeldTheSidecarStopsReadingTheSocketAndThenStoresEverything() throws Exception {
        FakeEngine.Spec spec = new FakeEngine.Spec(2, 2, 16, 4, 4, 8, 2);
        AtomicReference<HeldSink> held = new AtomicReference<>();
        try (Sidecars sidecar = new Sidecars(tmp, 2, (shape, maxTokens) -> {
                    HeldSink s = new HeldSink(shape, 64);
                    held.set(s);
                    return s;
                });
                FakeEngine engine = FakeEngine.connect(sidecar.socket)) {
            CompletableFuture<SessionSummary> end = sidecar.nextSession();
            engine.welcome(spec, tmp, "flood");
            engine.admitted("r");
            engine.step(2, (routing, slots) -> {
                for (int i = 0; i < 8; i++) {
                    routing.putInt(i * 4, i);
                }
                slots.putInt(0, 0);
                slots.putInt(4, 1);
            });
            assertTrue(held.get().awaitHeld(30), "the sink holds the first step");
            int pairs = 60_000; // about 2.3 MB of ADMITTED + ABORTED frames
            Thread flood = new Thread(() -> {
                for (int i = 0; i < pairs; i++) {
                    engine.admitted("q" + i);
                    engine.aborted("q" + i);
                }
            }, "flood");
            flood.start();
            long plateau = 0;
            for (int i = 0; i < 40; i++) {
                Thread.sleep(100);
                long now = engine.bytesSent();
                if (now == plateau && i > 5) {
                    break;
                }
                plateau = now;
            }
            Thread.sleep(500);
            long stalled = engine.bytesSent();
            assertTrue(flood.isAlive(), "the engine's writes block while the sink is held");
            assertEquals(plateau, stalled, "no byte was accepted in 0.5 s: Netty stopped reading");
            // the kernel's socket buffer, Reactor Netty's queue, the session's prefetch and the pipeline's queue: a few KB
            assertTrue(stalled < 1_000_000, "the socket took " + stalled + " bytes of about 2.3 MB: bounded");
            held.get().release();
            flood.join(60_000);
            assertTrue(!flood.isAlive(), "the flood went through once the sink was released");
            engine.finished("r", new int[] {0, 1});
            assertEquals(new SidecarMessage.Farewell(1, 2, 1), engine.goodbye());
            assertEquals(2, held.get().finished("r").seqLen());
            assertEquals(SessionSummary.Outcome.FAREWELL, Sidecars.await(end).outcome());
        }
    }
}
