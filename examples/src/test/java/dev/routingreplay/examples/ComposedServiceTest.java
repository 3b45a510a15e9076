package dev.routingreplay.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.ModelPreset;
import dev.routingreplay.core.host.HostDevice;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.blockhound.BlockHound;
import reactor.blockhound.BlockingOperationError;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Schedulers;

class ComposedServiceTest {
    @TempDir
    Path tmp;

    @BeforeAll
    static void installBlockHound() {
        BlockHound.install();
    }

    @Test
    void blockHoundIsWatching() {
        Throwable e = assertThrows(RuntimeException.class, () -> Mono.fromCallable(() -> {
            Thread.sleep(1);
            return 1;
        }).subscribeOn(Schedulers.parallel()).block(Duration.ofSeconds(5)));
        assertTrue(e instanceof BlockingOperationError || e.getCause() instanceof BlockingOperationError, e.toString());
    }

    @Test
    void thePipelineComposesWithOtherStreamsWithoutBlockingAndCleansUpOnCancel() {
        HostDevice device = new HostDevice();
        // far more requests than the trainer waits for: the rollout is always cancelled mid-way
        EngineConfig config = new EngineConfig(ModelPreset.GPT_OSS_120B.shape(), 5000, 32, 4, 8, 128, 4, 64, 16, 160, 40, 512, 128, 2, true,
                0.01, 0.02, 0.01, 1, 9);
        ComposedService.Summary summary = ComposedService.run(tmp.resolve("store"), config, device, 40);
        assertTrue(summary.trained() >= 40, summary.toString());
        assertEquals(0, summary.mismatches(), summary.toString());
        assertTrue(summary.captured() >= summary.trained(), summary.toString());
        assertTrue(summary.captured() < 5000, "cancelled mid-rollout: " + summary);
        assertEquals(0, device.liveBuffers(), "ring and engine buffers were all freed");
    }
}
