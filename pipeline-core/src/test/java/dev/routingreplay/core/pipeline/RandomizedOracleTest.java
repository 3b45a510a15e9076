package dev.routingreplay.core.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.RolloutScenario;
import java.time.Duration;
import java.util.Map;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import reactor.core.publisher.Flux;

class RandomizedOracleTest {

    @ParameterizedTest(name = "seed {0}, {1} layers top {2} of {3}, ids {4}, slots {5}, ring {6}")
    @CsvSource({
        "1, 3, 2, 300, INT64, INT64, 4",
        "2, 4, 8, 128, INT32, INT32, 2",
        "3, 2, 4, 256, INT64, INT32, 1",
    })
    void gatheredRoutingEqualsTheOracle(long seed, int layers, int topK, int experts, ElementType ids, ElementType slots, int depth) {
        RoutingShape shape = new RoutingShape(layers, topK, experts);
        HostDevice device = new HostDevice();
        int maxTokens = 256;
        try (HostEngine engine = new HostEngine(device, shape, maxTokens, ids, slots)) {
            RolloutScenario scenario = new RolloutScenario(seed, shape, engine, maxTokens, 10_000);
            try (MemoryRoutingSink sink = new MemoryRoutingSink(shape, scenario.slotCapacity())) {
                CapturePipeline pipeline = CapturePipeline.builder().name("oracle").device(device).sink(sink)
                        .ringDepth(depth).maxTokensPerStep(maxTokens).build();
                Long acked = Flux.<EngineEvent>generate(emitter -> {
                            EngineEvent e = scenario.next();
                            if (e == null) {
                                emitter.complete();
                            } else {
                                emitter.next(e);
                            }
                        })
                        .transform(pipeline)
                        .count()
                        .block(Duration.ofSeconds(120));
                assertNotNull(acked);

                assertTrue(scenario.steps() >= 10_000, "steps: " + scenario.steps());
                assertTrue(scenario.prefixHits > 0 && scenario.swapsOut > 0 && scenario.swapsIn > 0 && scenario.preemptions > 0
                        && scenario.aborts > 0 && scenario.rejectedDrafts > 0 && scenario.clears > 0 && scenario.paddingTokens > 0,
                        "every feature was exercised");
                Map<String, long[][]> expected = scenario.expected();
                assertTrue(expected.size() > 500, "finished requests: " + expected.size());
                assertEquals(expected.size(), sink.finishedIds().size());
                for (Map.Entry<String, long[][]> e : expected.entrySet()) {
                    RequestRouting got = sink.finished(e.getKey());
                    assertNotNull(got, e.getKey());
                    long[][] rows = e.getValue();
                    assertEquals(rows.length, got.seqLen(), e.getKey());
                    long[] flat = got.toLongArray();
                    for (int p = 0; p < rows.length; p++) {
                        for (int j = 0; j < shape.idsPerRow(); j++) {
                            if (rows[p][j] != flat[p * shape.idsPerRow() + j]) {
                                throw new AssertionError(e.getKey() + " position " + p + " id " + j + ": expected " + rows[p][j]
                                        + " got " + flat[p * shape.idsPerRow() + j]);
                            }
                        }
                    }
                }
                assertEquals(scenario.steps(), pipeline.metrics().snapshot().steps());
            }
        }
    }
}
