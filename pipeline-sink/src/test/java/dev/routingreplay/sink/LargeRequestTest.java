package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.ModelPreset;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.sink.RequestRouting;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LargeRequestTest {
    @TempDir
    Path dir;

    @Test
    void aLongDeepSeekRequestIsRecordedWholeAndReadBack() {
        RoutingShape shape = ModelPreset.DEEPSEEK_V3.shape();
        int tokens = 40_000; // 37 MB of routing: more than a default Chronicle block allows in one excerpt
        int stepTokens = 8192;
        RingSpec spec = new RingSpec(shape, 1, stepTokens, tokens);
        ByteBuffer host = ByteBuffer.allocateDirect(spec.layout().totalBytes()).order(ByteOrder.nativeOrder());
        CapturedStep.Owner owner = CapturedStep.over(spec, host);
        CapturedStep step = owner.view();
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, shape, tokens).withMinFreeBytes(0))) {
            for (int base = 0; base < tokens; base += stepTokens) {
                int n = Math.min(stepTokens, tokens - base);
                for (int t = 0; t < n; t++) {
                    host.putInt(step.slotsOffset() + 4 * t, base + t);
                    for (int i = 0; i < shape.idsPerRow(); i++) { // distinct experts in each layer
                        shape.dtype().write(host, step.rowOffset(t) + i * shape.dtype().bytes(), ((base + t) % 256 + i % shape.topK()) % 256);
                    }
                }
                owner.aim(base, n);
                sink.scatter(step);
            }
            int[] slots = new int[tokens];
            for (int p = 0; p < tokens; p++) {
                slots[p] = p;
            }
            sink.finish(new RequestFinished("long", slots));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> sink.finish(new RequestFinished("too-long", new int[131073])));
            assertTrue(e.getMessage().contains("exceeds the store's maxRequestTokens=131072"), e.getMessage());
        }
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            List<RequestRouting> all = replay.requests().collectList().block(Duration.ofSeconds(60));
            assertEquals(1, all.size());
            RequestRouting r = all.get(0);
            assertEquals(tokens, r.seqLen());
            assertEquals(39_999 % 256, r.id(39_999, 0, 0));
            assertEquals(12_345 % 256, r.id(12_345, 0, 0));
        }
    }
}
