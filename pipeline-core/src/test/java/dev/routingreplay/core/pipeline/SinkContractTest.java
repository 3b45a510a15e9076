package dev.routingreplay.core.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFault;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Pipelines;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;
import reactor.test.StepVerifier;

/** What a sink sees, in which order, and what the pipeline reports of it. */
class SinkContractTest {
    private final RoutingShape shape = Pipelines.smallUint16();

    /** Records every call, in order. */
    private static final class RecordingSink extends MemoryRoutingSink {
        final List<String> calls = new CopyOnWriteArrayList<>();

        RecordingSink(RoutingShape shape) {
            super(shape, 64);
        }

        @Override
        public int scatter(CapturedStep step) {
            calls.add("scatter " + step.stepId());
            return super.scatter(step);
        }

        @Override
        public void admit(RequestAdmitted request) {
            calls.add("admit " + request.requestId());
        }

        @Override
        public void finish(RequestFinished request) {
            calls.add("finish " + request.requestId());
            super.finish(request);
        }

        @Override
        public void abort(RequestAborted request) {
            calls.add("abort " + request.requestId());
        }

        @Override
        public void move(SlotsMoved move) {
            calls.add("move " + move.sourceSlots().length);
            super.move(move);
        }

        @Override
        public void clear(RoundCleared clear) {
            calls.add("clear");
            super.clear(clear);
        }

        @Override
        public void flush() {
            calls.add("flush");
        }
    }

    @Test
    void everyEventReachesTheSinkInOrderAndComesOutAsTheSameInstanceThenTheSinkIsFlushedOnce() {
        HostDevice host = new HostDevice();
        try (HostEngine engine = new HostEngine(host, shape, 4); RecordingSink sink = new RecordingSink(shape)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 4);
            List<EngineEvent> sent = new ArrayList<>();
            Flux<EngineEvent> events = Flux.range(0, 8).map(i -> {
                EngineEvent e = switch (i) {
                    case 0 -> new RequestAdmitted("a");
                    case 1 -> new RequestAdmitted("b");
                    case 2 -> engine.step(10, new long[] {1, 2, -1}, (t, l, k) -> 7 + k);
                    case 3 -> new SlotsMoved(new int[] {1}, new int[] {5});
                    case 4 -> new RequestFinished("a", new int[] {5, 2});
                    case 5 -> new RequestAborted("b");
                    case 6 -> engine.step(11, new long[] {3}, (t, l, k) -> 8 + k);
                    default -> new RoundCleared(1);
                };
                sent.add(e);
                return e;
            });
            List<EngineEvent> acknowledged = new ArrayList<>();
            StepVerifier.create(events.transform(pipeline))
                    .recordWith(() -> acknowledged)
                    .expectNextCount(8)
                    .expectComplete()
                    .verify(Duration.ofSeconds(10));
            for (int i = 0; i < sent.size(); i++) {
                assertSame(sent.get(i), acknowledged.get(i), "event " + i + " is acknowledged as itself, in order");
            }
            assertEquals(List.of("admit a", "admit b", "scatter 10", "move 1", "finish a", "abort b", "scatter 11", "clear", "flush"),
                    sink.calls);
            PipelineStats stats = pipeline.metrics().snapshot();
            assertEquals(2, stats.steps());
            assertEquals(3, stats.rows(), "padding is not a row");
            assertEquals(3L * shape.rowBytes(), stats.bytes());
            assertEquals(1, stats.requestsFinished());
            assertEquals(1, stats.requestsAborted());
            assertEquals(0, pipeline.metrics().ringOccupancy(), "every ring slot released");
        }
    }

    @Test
    void aFailedRunDoesNotFlushTheSink() {
        HostDevice host = new HostDevice();
        try (HostEngine engine = new HostEngine(host, shape, 4); RecordingSink sink = new RecordingSink(shape)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 4);
            Flux<EngineEvent> events = Flux.just(0, 1).map(i -> i == 0 ? engine.step(1, new long[] {1}, (t, l, k) -> 7)
                    : new RequestFault("x", new RequestAborted("x"), "not an engine event"));
            StepVerifier.create(events.transform(pipeline)).expectNextCount(1).expectError(CapturePipelineException.class)
                    .verify(Duration.ofSeconds(10));
            assertEquals(List.of("scatter 1"), sink.calls);
            assertEquals(0, pipeline.metrics().ringOccupancy());
        }
    }
}
