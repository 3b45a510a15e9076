package dev.routingreplay.core.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.InvalidEventException;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFault;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoutingBuffer;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.sink.MissingReason;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Pipelines;
import dev.routingreplay.core.testing.Routing;
import java.time.Duration;
import java.util.List;
import java.util.function.Function;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.Flux;
import reactor.test.StepVerifier;

class ValidationTest {
    private final RoutingShape shape = Pipelines.smallUint16();
    private final HostDevice host = new HostDevice();

    /** Runs the script; expects {@code okEvents} acknowledgements and then an error whose message contains {@code expected}. */
    private MemoryRoutingSink expectFailure(Function<HostEngine, List<Supplier<EngineEvent>>> script, int okEvents, String expected) {
        MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64);
        try (HostEngine engine = new HostEngine(host, shape, 8)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 4, 8);
            StepVerifier.create(Flux.fromIterable(script.apply(engine)).map(Supplier::get).transform(pipeline))
                    .expectNextCount(okEvents)
                    .expectErrorSatisfies(e -> {
                        assertInstanceOf(CapturePipelineException.class, e);
                        assertInstanceOf(InvalidEventException.class, e.getCause());
                        assertTrue(e.getMessage().contains(expected), "message: " + e.getMessage());
                    })
                    .verify(Duration.ofSeconds(10));
        }
        return sink;
    }

    /** Runs the events through a fresh pipeline into {@code sink} and returns everything it emitted, in order. */
    private List<EngineEvent> run(MemoryRoutingSink sink, CapturePipeline pipeline, List<Supplier<EngineEvent>> script) {
        List<EngineEvent> out = Flux.fromIterable(script).map(Supplier::get).transform(pipeline).collectList().block(Duration.ofSeconds(10));
        assertNotNull(out);
        return out;
    }

    @Test
    void aSlotOutOfRangeInAStepDropsOnlyThatTokensRowCountsItAndTheRunGoesOn() {
        try (MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64); HostEngine engine = new HostEngine(host, shape, 8)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 4, 8);
            List<EngineEvent> out = run(sink, pipeline, List.of(
                    () -> engine.step(1, new long[] {5}, (t, l, k) -> Routing.id(1, 0, l, k, 300)),
                    () -> engine.step(2, new long[] {6, 99999}, (t, l, k) -> Routing.id(2, t, l, k, 300)),
                    () -> engine.step(3, new long[] {7}, (t, l, k) -> Routing.id(3, t, l, k, 300))));
            assertEquals(3, out.size(), "every step acknowledged");
            assertEquals(Routing.id(1, 0, 2, 1, 300), sink.read(5).id(0, 2, 1));
            assertEquals(Routing.id(2, 0, 2, 1, 300), sink.read(6).id(0, 2, 1), "the good token of the bad step is stored");
            assertEquals(Routing.id(3, 0, 2, 1, 300), sink.read(7).id(0, 2, 1), "later steps are stored");
            assertEquals(1, pipeline.metrics().snapshot().invalidSlots());
        }
    }

    @Test
    void paddingSlotsAreSkippedEvenWithGarbageIds() {
        try (MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64); HostEngine engine = new HostEngine(host, shape, 8)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 8);
            Flux.<Supplier<EngineEvent>>just(() -> engine.step(1, new long[] {-1, 3, -1}, (t, l, k) -> t == 1 ? 4 + k : -12345))
                    .map(Supplier::get).transform(pipeline).blockLast(Duration.ofSeconds(5));
            assertEquals(1, pipeline.metrics().snapshot().rows());
            assertEquals(4, sink.read(3).id(0, 0, 0));
            assertEquals(0, pipeline.metrics().snapshot().invalidIds(), "padding ids are not checked");
            assertEquals(MissingReason.NEVER_WRITTEN, sink.read(0).missingReason(0));
        }
    }

    @Test
    void anExpertIdOutOfRangeMakesItsTokensRowMissingAsInvalidIdAndTheRunGoesOn() {
        try (MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64); HostEngine engine = new HostEngine(host, shape, 8)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 8);
            List<EngineEvent> out = run(sink, pipeline, List.of(
                    () -> new RequestAdmitted("r"),
                    () -> engine.step(4, new long[] {1, 2}, (t, l, k) -> t == 1 && l == 2 && k == 1 ? 300 : Routing.id(4, t, l, k, 300)),
                    () -> engine.step(5, new long[] {3}, (t, l, k) -> -1),
                    () -> new RequestFinished("r", new int[] {1, 2, 3})));
            assertEquals(4, out.size());
            RequestRouting r = sink.finished("r");
            assertNull(r.missingReason(0));
            assertEquals(MissingReason.INVALID_ID, r.missingReason(1));
            assertEquals(MissingReason.INVALID_ID, r.missingReason(2));
            assertEquals(Routing.id(4, 0, 1, 1, 300), r.id(0, 1, 1));
            assertEquals(7, pipeline.metrics().snapshot().invalidIds(), "one bad id in step 4, six in step 5");
        }
    }

    @Test
    void tooManyTokensForTheRing() {
        MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64);
        try (HostEngine engine = new HostEngine(host, shape, 16); sink) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 8);
            StepVerifier.create(Flux.<Supplier<EngineEvent>>just(() -> engine.step(3, new long[9], (t, l, k) -> 0))
                            .map(Supplier::get).transform(pipeline))
                    .expectErrorSatisfies(e -> assertTrue(e.getMessage().contains(
                            "step 3: validation failed: tokenCount=9 exceeds the ring slot capacity maxTokensPerStep=8"), e.getMessage()))
                    .verify(Duration.ofSeconds(5));
        }
    }

    @Test
    void shapeMismatches() {
        RoutingShape other = new RoutingShape(4, 2, 300);
        try (HostEngine wrong = new HostEngine(host, other, 8)) {
            expectFailure(engine -> List.of(() -> wrong.step(6, new long[] {1}, (t, l, k) -> 0)), 0,
                    "step 6: validation failed: routing.layers=4 does not match the pipeline's moeLayers=3").close();
        }
        expectFailure(engine -> List.of(() -> new CaptureStep(8, 2,
                        new RoutingBuffer(host.allocate(8), ElementType.INT32, 3, 2), engine.slotBuffer())), 0,
                "routing buffer holds 0 tokens, tokenCount=2").close();
        try (MemoryRoutingSink sink = new MemoryRoutingSink(other, 8)) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                    () -> CapturePipeline.builder().device(host).sink(sink).shape(shape).build());
            assertTrue(e.getMessage().startsWith("shape mismatch"), e.getMessage());
        }
    }

    @Test
    void aFinishOrAbortOfAnIdThatIsNotLiveIsThatRequestsFaultAndTheRunGoesOn() {
        try (MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64); HostEngine engine = new HostEngine(host, shape, 8)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 8);
            RequestFinished ghost = new RequestFinished("ghost", new int[0]);
            List<EngineEvent> out = run(sink, pipeline, List.of(
                    () -> new RequestAdmitted("a"), () -> new RequestAdmitted("a", 0), // admitted again: resumed
                    () -> ghost,
                    () -> new RequestAdmitted("b"), () -> new RequestAborted("b"), () -> new RequestAborted("b"),
                    () -> engine.step(1, new long[] {1}, (t, l, k) -> Routing.id(1, t, l, k, 300)),
                    () -> new SlotsMoved(new int[] {1}, new int[] {-3}),
                    () -> new RequestFinished("a", new int[] {1, 64})));
            assertEquals(9, out.size(), "every event answered");
            RequestFault f = assertInstanceOf(RequestFault.class, out.get(2));
            assertEquals("ghost", f.requestId());
            assertSame(ghost, f.refused());
            assertEquals("request id 'ghost' finished but not live: never admitted, or already finished or aborted (admit it again to record it again)",
                    f.message());
            assertInstanceOf(RequestAborted.class, out.get(4));
            assertEquals("b", assertInstanceOf(RequestFault.class, out.get(5)).requestId());
            assertInstanceOf(SlotsMoved.class, out.get(7));
            RequestRouting a = sink.finished("a");
            assertNull(a.missingReason(0));
            assertEquals(MissingReason.BAD_SLOT, a.missingReason(1), "a bad slot in a finish is a missing row of that position");
            assertEquals(List.of("a"), sink.finishedIds(), "the refused finish stored nothing");
            assertEquals(2, pipeline.metrics().snapshot().requestFaults());
        }
    }

    @Test
    void aRequestFaultIsNotAnEngineEvent() {
        expectFailure(engine -> List.of(() -> new RequestFault("x", new RequestAborted("x"), "m")), 0,
                "RequestFault is an output of the pipeline, never an engine event").close();
    }

    @Test
    void aRowOfAnEarlierRoundIsMissingAsStaleRoundNeverReturned() {
        MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64);
        try (HostEngine engine = new HostEngine(host, shape, 8); sink) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 8);
            run(sink, pipeline, List.of(() -> new RequestAdmitted("r"),
                    () -> engine.step(1, new long[] {0}, (t, l, k) -> 1 + k),
                    () -> new dev.routingreplay.core.event.RoundCleared(1),
                    () -> new RequestAdmitted("r", 1),
                    () -> new RequestFinished("r", new int[] {0})));
            assertEquals(MissingReason.STALE_ROUND, sink.finished("r").missingReason(0), "even inside a declared cached prefix");
        }
    }

    @Test
    void theLimitsThemselvesAreAccepted() {
        try (HostEngine engine = new HostEngine(host, shape, 8); MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 8); // ring slots and engine buffers of exactly 8 tokens
            long[] full = {0, 1, 2, 3, 4, 5, 6, 63};
            StepVerifier.create(Flux.just(0, 1).map(i -> (EngineEvent) (i == 0
                            ? engine.step(1, full, (t, l, k) -> t == 7 ? 299 - k : k)
                            : engine.step(2, new long[0], (t, l, k) -> 0))).transform(pipeline))
                    .expectNextCount(2)
                    .expectComplete()
                    .verify(Duration.ofSeconds(10));
            assertEquals(299, sink.read(63).id(0, 2, 0), "a full step with the last slot and the largest id was stored");
        }
    }

    @Test
    void aRoundClearEndsEveryLiveRequest() {
        try (MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 8);
            // after a clear, an id may be admitted again; an abort of a request from before the clear is its fault
            List<EngineEvent> out = run(sink, pipeline, List.of(() -> new RequestAdmitted("a"), () -> new dev.routingreplay.core.event.RoundCleared(1),
                    () -> new RequestAdmitted("a"), () -> new dev.routingreplay.core.event.RoundCleared(2), () -> new RequestAborted("a")));
            assertEquals("request id 'a' aborted but not live: never admitted, or already finished or aborted (admit it again to record it again)",
                    assertInstanceOf(RequestFault.class, out.get(4)).message());
        }
    }
}
