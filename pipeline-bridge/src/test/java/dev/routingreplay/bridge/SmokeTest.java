package dev.routingreplay.bridge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.bridge.testing.FakeEngine;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SmokeTest {
    @TempDir
    Path tmp;

    @Test
    void oneRequest() {
        FakeEngine.Spec spec = new FakeEngine.Spec(2, 2, 16, 4, 8, 8, 2);
        try (Sidecars sidecar = new Sidecars(tmp, 64, 2); FakeEngine engine = FakeEngine.connect(sidecar.socket)) {
            engine.welcome(spec, tmp, "smoke");
            engine.admitted("r1");
            for (int s = 0; s < 4; s++) {
                int base = s * 2;
                engine.step(2, (routing, slots) -> {
                    for (int i = 0; i < 8; i++) {
                        routing.putInt(i * 4, (base * 4 + i) % 16);
                    }
                    slots.putLong(0, base);
                    slots.putLong(8, base + 1);
                });
            }
            engine.finished("r1", new int[] {0, 1, 2, 3, 4, 5, 6, 7});
            SidecarMessage bye = engine.goodbye();
            assertEquals(new SidecarMessage.Farewell(4, 8, 1), bye);
            int[] ids = sidecar.memorySink().finished("r1").toIntArray();
            for (int i = 0; i < ids.length; i++) {
                assertEquals(i % 16, ids[i]);
            }
            assertTrue(engine.awaitClosedBySidecar());
        }
        assertTrue(!Files.exists(tmp.resolve("r3.sock")));
    }
}
