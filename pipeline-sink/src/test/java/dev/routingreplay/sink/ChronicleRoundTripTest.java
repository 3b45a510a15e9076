package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.RolloutScenario;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.publisher.Flux;

class ChronicleRoundTripTest {
    @TempDir
    Path dir;

    @Test
    void everyRequestReadBackEqualsTheOracleAndRecoveryRebuildsTheIndex() {
        RoutingShape shape = new RoutingShape(4, 8, 256);
        HostDevice device = new HostDevice();
        int maxTokens = 256;
        Map<String, long[][]> expected;
        long steps;
        long clears;
        try (HostEngine engine = new HostEngine(device, shape, maxTokens)) {
            RolloutScenario scenario = new RolloutScenario(7, shape, engine, maxTokens, 10_000);
            try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, shape, scenario.slotCapacity()))) {
                CapturePipeline pipeline = CapturePipeline.builder().name("chronicle").device(device).sink(sink).ringDepth(4)
                        .maxTokensPerStep(maxTokens).build();
                Flux.<EngineEvent>generate(s -> {
                    EngineEvent e = scenario.next();
                    if (e == null) {
                        s.complete();
                    } else {
                        s.next(e);
                    }
                }).transform(pipeline).blockLast(Duration.ofSeconds(120));
                assertEquals(0, sink.supersededFinishes());
            }
            expected = scenario.expected();
            steps = scenario.steps();
            clears = scenario.clears;
        }
        assertTrue(steps >= 10_000);
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            List<RequestRouting> all = replay.requests().collectList().block(Duration.ofSeconds(60));
            assertEquals(expected.size(), all.size());
            for (RequestRouting r : all) {
                long[][] rows = expected.get(r.requestId());
                assertEquals(rows.length, r.seqLen(), r.requestId());
                long[] flat = r.toLongArray();
                for (int p = 0; p < rows.length; p++) {
                    for (int j = 0; j < shape.idsPerRow(); j++) {
                        assertEquals(rows[p][j], flat[p * shape.idsPerRow() + j], r.requestId() + " position " + p);
                    }
                }
            }
        }
        try (ChronicleRoutingSink reopened = ChronicleRoutingSink.open(StoreConfig.of(dir, shape, 1))) {
            RecoveryReport report = reopened.recovery();
            assertTrue(report.steps() > 0, report.describe());
            assertEquals(steps - 1, report.lastStepId(), report.describe());
            assertEquals(clears, report.clears(), report.describe());
        }
    }
}
