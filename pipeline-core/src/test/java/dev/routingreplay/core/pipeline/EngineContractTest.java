package dev.routingreplay.core.pipeline;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.InvalidEventException;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.testing.DelegatingDevice;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Pipelines;
import dev.routingreplay.core.testing.Routing;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import reactor.core.publisher.BaseSubscriber;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Hooks;
import reactor.core.scheduler.Schedulers;
import reactor.test.StepVerifier;

/** What the pipeline asks of the engine, and how it fails when an engine (or an operator before it) breaks it. */
class EngineContractTest {
    private final RoutingShape shape = Pipelines.smallUint16();

    @Test
    void aBufferingOperatorBeforeThePipelineIsDetectedInsteadOfCapturingAnotherStepsRouting() {
        HostDevice host = new HostDevice();
        try (HostEngine engine = new HostEngine(host, shape, 4); MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 4);
            // the engine runs ahead: buffer(3) holds step 0 while steps 1 and 2 overwrite the engine's buffer
            Flux<EngineEvent> events = Flux.range(0, 6)
                    .map(i -> (EngineEvent) engine.step(i, new long[] {i}, (t, l, k) -> Routing.id(i, 0, l, k, 300)))
                    .buffer(3)
                    .flatMapIterable(list -> list);
            StepVerifier.create(events.transform(pipeline))
                    .expectErrorSatisfies(e -> {
                        assertInstanceOf(CapturePipelineException.class, e);
                        assertInstanceOf(InvalidEventException.class, e.getCause());
                        assertTrue(e.getMessage().startsWith("step 0: validation failed: routing buffer generation is 3 but the step carries generation 1"),
                                e.getMessage());
                        assertTrue(e.getMessage().contains("publishOn, cache, buffer"), e.getMessage());
                    })
                    .verify(Duration.ofSeconds(10));
        }
    }

    @Test
    void aPublishOnBetweenARunningEngineAndThePipelineIsDetected() {
        HostDevice host = new HostDevice();
        try (HostEngine engine = new HostEngine(host, shape, 4); MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 8, 4);
            // an engine that does not wait for demand: it steps on while events queue in publishOn
            Flux<EngineEvent> events = Flux.range(0, 64)
                    .map(i -> (EngineEvent) engine.step(i, new long[] {i}, (t, l, k) -> Routing.id(i, 0, l, k, 300)))
                    .publishOn(Schedulers.single(), 64);
            StepVerifier.create(events.transform(pipeline))
                    .thenConsumeWhile(e -> true)
                    .expectErrorSatisfies(e -> assertTrue(e.getMessage().contains("overwrote its routing buffer"), e.getMessage()))
                    .verify(Duration.ofSeconds(10));
        }
    }

    @Test
    void theEngineMayReuseItsSlotArraysOnceAnEventIsEmitted() {
        HostDevice host = new HostDevice();
        try (HostEngine engine = new HostEngine(host, shape, 4); MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 4);
            int[] reused = {1, 2};
            int[] sources = {1};
            int[] destinations = {9};
            EngineFeed feed = new EngineFeed();
            feed.flux().transform(pipeline).subscribe();
            feed.emit(engine.step(0, new long[] {1, 2}, (t, l, k) -> Routing.id(0, t, l, k, 300)));
            feed.emit(new RequestAdmitted("r"));
            RequestFinished finished = new RequestFinished("r", reused);
            SlotsMoved moved = new SlotsMoved(sources, destinations);
            reused[0] = 63; // the engine's next use of its arrays, before the sink thread read them
            sources[0] = 63;
            destinations[0] = 0;
            feed.emit(finished);
            feed.emit(moved);
            feed.complete();
            pipeline.released().block(Duration.ofSeconds(5));
            assertNotNull(sink.finished("r"), "the finish was gathered from the slots it was built with");
            assertArrayEquals(new int[] {1, 2}, finished.slots());
            assertEquals(Routing.id(0, 0, 1, 1, 300), sink.read(9).id(0, 1, 1), "the move used the arrays it was built with");
        }
    }

    @Test
    void aBufferOfAnotherHostDeviceIsRefused() {
        HostDevice host = new HostDevice();
        HostDevice other = new HostDevice();
        try (HostEngine engine = new HostEngine(other, shape, 4); MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 4);
            StepVerifier.create(Flux.just(0).map(i -> (EngineEvent) engine.step(i, new long[] {1}, (t, l, k) -> 1)).transform(pipeline))
                    .expectErrorSatisfies(e -> {
                        assertInstanceOf(IllegalArgumentException.class, e.getCause());
                        assertTrue(e.getMessage().contains("belongs to another HostDevice"), e.getMessage());
                    })
                    .verify(Duration.ofSeconds(5));
        }
    }

    @Test
    void aDeviceErrorThatRacesACancellationGoesToOnErrorDropped() {
        HostDevice host = new HostDevice();
        AtomicReference<Throwable> dropped = new AtomicReference<>();
        BaseSubscriber<EngineEvent> subscriber = new BaseSubscriber<>() {
        };
        // the subscriber cancels while the device call is running; then the device call fails
        DelegatingDevice device = new DelegatingDevice(host, step -> {
            subscriber.dispose();
            throw new IllegalStateException("CUDA_ERROR_ILLEGAL_ADDRESS in cuLaunchKernel");
        });
        Hooks.onErrorDropped(dropped::set);
        try (HostEngine engine = new HostEngine(host, shape, 4); MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64)) {
            CapturePipeline pipeline = Pipelines.of(device, sink, 2, 4);
            Flux.range(0, 3).map(i -> (EngineEvent) engine.step(i, new long[] {i}, (t, l, k) -> 1)).transform(pipeline).subscribe(subscriber);
            pipeline.released().block(Duration.ofSeconds(5));
        } finally {
            Hooks.resetOnErrorDropped();
        }
        assertNotNull(dropped.get(), "the error was not silently lost");
        assertTrue(dropped.get().getMessage().contains("step 0: device enqueue failed: CUDA_ERROR_ILLEGAL_ADDRESS"), dropped.get().getMessage());
    }
}
