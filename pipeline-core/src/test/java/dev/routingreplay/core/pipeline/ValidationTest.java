package dev.routingreplay.core.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.InvalidEventException;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoutingBuffer;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.sink.MemoryRoutingSink;
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

    @Test
    void slotOutOfRangeFailsAndLeavesOtherRowsUntouched() {
        try (MemoryRoutingSink sink = expectFailure(engine -> List.of(
                () -> engine.step(1, new long[] {5}, (t, l, k) -> Routing.id(1, 0, l, k, 300)),
                () -> engine.step(2, new long[] {5, 99999}, (t, l, k) -> 9)), 1,
                "step 2: validation failed: slotMapping[1] = 99999 is out of range [-1, 64)")) {
            assertEquals(Routing.id(1, 0, 2, 1, 300), sink.read(5).id(0, 2, 1), "the bad step wrote nothing");
        }
    }

    @Test
    void paddingSlotsAreSkippedEvenWithGarbageIds() {
        try (MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64); HostEngine engine = new HostEngine(host, shape, 8)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 8);
            Flux.<Supplier<EngineEvent>>just(() -> engine.step(1, new long[] {-1, 3, -1}, (t, l, k) -> t == 1 ? 4 : -12345))
                    .map(Supplier::get).transform(pipeline).blockLast(Duration.ofSeconds(5));
            assertEquals(1, pipeline.metrics().snapshot().rows());
            assertEquals(4, sink.read(3).id(0, 0, 0));
            assertThrows(IllegalStateException.class, () -> sink.read(0));
        }
    }

    @Test
    void expertIdOutOfRangeNamesTokenLayerAndK() {
        expectFailure(engine -> List.of(() -> engine.step(4, new long[] {1, 2},
                        (t, l, k) -> t == 1 && l == 2 && k == 1 ? 300 : 0)), 0,
                "step 4: validation failed: expert id 300 at token 1, layer 2, k 1 is out of range [0, 300)").close();
        expectFailure(engine -> List.of(() -> engine.step(5, new long[] {1}, (t, l, k) -> -1)), 0,
                "expert id -1 at token 0, layer 0, k 0").close();
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
    void duplicateAndUnknownRequestIds() {
        expectFailure(engine -> List.of(() -> new RequestAdmitted("a"), () -> new RequestAdmitted("a")), 1,
                "admission of request a: validation failed: duplicate request id 'a'").close();
        expectFailure(engine -> List.of(() -> new RequestFinished("ghost", new int[0])), 0,
                "unknown request id 'ghost'").close();
        expectFailure(engine -> List.of(() -> new RequestAdmitted("b"), () -> new RequestAborted("b"),
                () -> new RequestAborted("b")), 2, "abort of request b: validation failed: unknown request id 'b'").close();
        expectFailure(engine -> List.of(() -> new RequestAdmitted("c"), () -> new RequestFinished("c", new int[] {1, 64})), 1,
                "slots[1] = 64 is out of range [0, 64)").close();
        expectFailure(engine -> List.of(() -> new SlotsMoved(new int[] {1}, new int[] {-3})), 0,
                "destinationSlots[0] = -3 is out of range").close();
    }

    @Test
    void aGatherOfAnUnwrittenSlotFailsInsteadOfReturningStaleRows() {
        MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64);
        try (HostEngine engine = new HostEngine(host, shape, 8); sink) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 8);
            StepVerifier.create(Flux.<Supplier<EngineEvent>>just(() -> new RequestAdmitted("r"),
                                    () -> engine.step(1, new long[] {0}, (t, l, k) -> 1),
                                    () -> new dev.routingreplay.core.event.RoundCleared(1),
                                    () -> new RequestAdmitted("r"),
                                    () -> new RequestFinished("r", new int[] {0}))
                            .map(Supplier::get).transform(pipeline))
                    .expectNextCount(4)
                    .expectErrorSatisfies(e -> assertTrue(e.getMessage().contains(
                            "position 0 of 1 maps to slot 0, which holds no routing"), e.getMessage()))
                    .verify(Duration.ofSeconds(5));
        }
    }

    @Test
    void theLimitsThemselvesAreAccepted() {
        try (HostEngine engine = new HostEngine(host, shape, 8); MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 8); // ring slots and engine buffers of exactly 8 tokens
            long[] full = {0, 1, 2, 3, 4, 5, 6, 63};
            StepVerifier.create(Flux.just(0, 1).map(i -> (EngineEvent) (i == 0
                            ? engine.step(1, full, (t, l, k) -> t == 7 ? 299 : 0)
                            : engine.step(2, new long[0], (t, l, k) -> 0))).transform(pipeline))
                    .expectNextCount(2)
                    .expectComplete()
                    .verify(Duration.ofSeconds(10));
            assertEquals(299, sink.read(63).id(0, 2, 1), "a full step with the last slot and the largest id was stored");
        }
    }

    @Test
    void aRoundClearEndsEveryLiveRequest() {
        try (MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 8);
            // after a clear, an id may be admitted again; a finish of a request from before the clear is unknown
            StepVerifier.create(Flux.<EngineEvent>just(new RequestAdmitted("a"), new dev.routingreplay.core.event.RoundCleared(1),
                            new RequestAdmitted("a"), new dev.routingreplay.core.event.RoundCleared(2), new RequestAborted("a"))
                            .transform(pipeline))
                    .expectNextCount(4)
                    .expectErrorSatisfies(e -> assertTrue(e.getMessage().contains("abort of request a: validation failed: unknown request id 'a'"),
                            e.getMessage()))
                    .verify(Duration.ofSeconds(10));
        }
    }
}
