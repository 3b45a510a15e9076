package dev.routingreplay.core.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Pipelines;
import dev.routingreplay.core.testing.Routing;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;
import reactor.test.StepVerifier;

class OrderingTest {
    private final RoutingShape shape = Pipelines.smallUint16();

    @Test
    void finishGathersEveryEarlierStepAndLaterStepsReuseItsSlotsOnlyAfterIt() {
        HostDevice device = new HostDevice();
        try (HostEngine engine = new HostEngine(device, shape, 8); MemoryRoutingSink sink = new MemoryRoutingSink(shape, 16)) {
            // request 1 prefill writes slots 0..3, then decodes position 4 into slot 4; finished; request 2 then reuses
            // slots 0..4 immediately. With a deep ring all of this is in flight at once.
            List<Supplier<EngineEvent>> script = new ArrayList<>();
            script.add(() -> new RequestAdmitted("r1"));
            script.add(() -> engine.step(1, new long[] {0, 1, 2, 3}, (t, l, k) -> Routing.id(1, t, l, k, 300)));
            script.add(() -> engine.step(2, new long[] {4, -1}, (t, l, k) -> t == 0 ? Routing.id(1, 4, l, k, 300) : 7));
            script.add(() -> new RequestFinished("r1", new int[] {0, 1, 2, 3, 4}));
            script.add(() -> new RequestAdmitted("r2"));
            script.add(() -> engine.step(3, new long[] {3, 2, 1, 0, 4}, (t, l, k) -> Routing.id(2, t, l, k, 300)));
            script.add(() -> new RequestFinished("r2", new int[] {3, 2, 1, 0, 4}));
            CapturePipeline pipeline = Pipelines.of(device, sink, 8, 8);

            StepVerifier.create(Flux.fromIterable(script).map(Supplier::get).transform(pipeline))
                    .expectNextCount(script.size())
                    .expectComplete()
                    .verify(Duration.ofSeconds(10));

            assertEquals(List.of("r1", "r2"), sink.finishedIds());
            RequestRouting r1 = sink.finished("r1");
            RequestRouting r2 = sink.finished("r2");
            for (int p = 0; p < 5; p++) {
                for (int l = 0; l < shape.moeLayers(); l++) {
                    for (int k = 0; k < shape.topK(); k++) {
                        assertEquals(Routing.id(1, p, l, k, 300), r1.id(p, l, k), "r1 position " + p);
                        assertEquals(Routing.id(2, p, l, k, 300), r2.id(p, l, k), "r2 position " + p);
                    }
                }
            }
            PipelineStats stats = pipeline.metrics().snapshot();
            assertEquals(3, stats.steps());
            assertEquals(10, stats.rows(), "the padding token is not stored");
            assertEquals(10L * shape.rowBytes(), stats.bytes());
            assertEquals(2, stats.requestsFinished());
            assertEquals(0, stats.ringOccupancy());
        }
    }

    @Test
    void outputRepeatsTheInputEventsInOrder() {
        HostDevice device = new HostDevice();
        try (HostEngine engine = new HostEngine(device, shape, 4); MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64)) {
            CapturePipeline pipeline = Pipelines.of(device, sink, 2, 4);
            List<Long> acked = new ArrayList<>();
            Flux.range(0, 200)
                    .map(i -> (EngineEvent) engine.step(i, new long[] {i % 64}, (t, l, k) -> Routing.id(i, 0, l, k, 300)))
                    .transform(pipeline)
                    .doOnNext(e -> acked.add(((CaptureStep) e).stepId()))
                    .blockLast(Duration.ofSeconds(10));
            List<Long> expected = new ArrayList<>();
            for (long i = 0; i < 200; i++) {
                expected.add(i);
            }
            assertEquals(expected, acked);
        }
    }
}
