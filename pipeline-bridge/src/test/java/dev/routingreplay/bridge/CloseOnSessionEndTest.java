package dev.routingreplay.bridge;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.routingreplay.bridge.testing.FakeEngine;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A server closed from its own session-end callback (as {@code r3 sidecar --once} does) still answers GOODBYE with
 * FAREWELL: the session reports its end only after the answer left. Before, the report came first and the close could
 * drop the FAREWELL, leaving the engine without an answer.
 */
class CloseOnSessionEndTest {
    @TempDir
    Path tmp;

    @Test
    void farewellReachesTheEngineWhenTheServerClosesAsTheSessionEnds() {
        FakeEngine.Spec spec = new FakeEngine.Spec(2, 2, 16, 4, 8, 8, 2);
        AtomicReference<SidecarServer> server = new AtomicReference<>();
        server.set(SidecarServer.builder().socket(tmp.resolve("r3.sock")).device(new HostDevice()).ringDepth(2)
                .sinks((shape, maxTokens) -> new MemoryRoutingSink(shape, 64)).closeTimeout(Duration.ofSeconds(30)).log(line -> { })
                .onSessionEnd(summary -> server.get().close()).bind());
        try (FakeEngine engine = FakeEngine.connect(server.get().socket())) {
            engine.welcome(spec, tmp, "once");
            engine.step(1, (routing, slots) -> slots.putLong(0, 3));
            assertEquals(new SidecarMessage.Farewell(1, 1, 0), engine.goodbye());
        } finally {
            server.get().close();
        }
    }
}
