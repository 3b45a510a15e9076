package dev.routingreplay.core.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFault;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.testing.HeldSink;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Pipelines;
import dev.routingreplay.core.testing.Routing;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.reactivestreams.Subscription;
import reactor.core.Disposable;
import reactor.core.publisher.BaseSubscriber;
import reactor.core.publisher.Flux;
import reactor.core.scheduler.Schedulers;
import reactor.test.StepVerifier;

/** The end of a run: what an engine, a re-subscriber and the code that closes the sink can rely on. */
@Timeout(30)
class RunLifecycleTest {
    private final RoutingShape shape = Pipelines.smallUint16();

    @Test
    void anEngineFeedThrowsWithTheCauseOnceThePipelineFailed() throws Exception {
        HostDevice host = new HostDevice();
        try (MemoryRoutingSink sink = new MemoryRoutingSink(shape, 8)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 4);
            EngineFeed feed = new EngineFeed();
            CompletableFuture<Throwable> seen = new CompletableFuture<>();
            feed.flux().transform(pipeline).subscribe(e -> { }, seen::complete);
            feed.emit(new RequestFault("x", new RequestAborted("x"), "m")); // not an engine event: fails the pipeline inside onNext
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> feed.emit(new RequestAdmitted("next")));
            assertTrue(e.getMessage().contains("was not captured"), e.getMessage());
            CapturePipelineException cause = assertInstanceOf(CapturePipelineException.class, e.getCause());
            assertTrue(cause.getMessage().contains("RequestFault is an output of the pipeline"), cause.getMessage());
            assertThrows(IllegalStateException.class, () -> feed.tryEmit(new RequestAdmitted("again")));
            assertSame(seen.get(5, TimeUnit.SECONDS), cause, "the engine sees the error the subscriber got");
            pipeline.released().block(Duration.ofSeconds(5));
            assertFalse(pipeline.isRunning());
        }
    }

    @Test
    void anEngineWaitingForRingSlotsGetsTheSinkErrorInsteadOfHanging() throws Exception {
        HostDevice host = new HostDevice();
        CountDownLatch inSink = new CountDownLatch(1);
        CountDownLatch failNow = new CountDownLatch(1);
        MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64) {
            @Override
            public int scatter(CapturedStep step) {
                inSink.countDown();
                try {
                    failNow.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
                throw new UncheckedIOException(new IOException("No space left on device"));
            }
        };
        try (HostEngine engine = new HostEngine(host, shape, 4); sink) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 4);
            EngineFeed feed = new EngineFeed();
            feed.flux().transform(pipeline).subscribe(e -> { }, e -> { });
            CompletableFuture<Throwable> engineThread = CompletableFuture.supplyAsync(() -> {
                try {
                    for (int i = 0; i < 100; i++) {
                        int step = i;
                        feed.emit(engine.step(step, new long[] {i}, (t, l, k) -> Routing.id(step, 0, l, k, 300)));
                    }
                    return null;
                } catch (Throwable t) {
                    return t;
                }
            });
            assertTrue(inSink.await(5, TimeUnit.SECONDS));
            Thread.sleep(20); // the engine is now parked in emit: the ring is full
            assertFalse(engineThread.isDone(), "the engine waits while the ring is full");
            failNow.countDown();
            Throwable thrown = engineThread.get(5, TimeUnit.SECONDS);
            IllegalStateException e = assertInstanceOf(IllegalStateException.class, thrown);
            assertTrue(e.getMessage().contains("No space left on device"), e.getMessage());
            assertTrue(e.getCause().getMessage().startsWith("step 0: sink scatter failed"), e.getCause().getMessage());
        }
    }

    @Test
    void anEngineFeedSaysWhenItsSubscriberCancelled() {
        HostDevice host = new HostDevice();
        try (MemoryRoutingSink sink = new MemoryRoutingSink(shape, 8)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 4);
            EngineFeed feed = new EngineFeed();
            assertFalse(feed.tryEmit(new RequestAdmitted("early")), "before a subscriber: no demand, no error");
            Disposable run = feed.flux().transform(pipeline).subscribe();
            assertTrue(feed.tryEmit(new RequestAdmitted("a")));
            run.dispose();
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> feed.emit(new RequestAdmitted("b")));
            assertInstanceOf(CancellationException.class, e.getCause());
            pipeline.released().block(Duration.ofSeconds(5));
            // a feed can be subscribed again after its pipeline released
            Disposable again = feed.flux().transform(pipeline).subscribe();
            assertTrue(feed.tryEmit(new RequestAdmitted("c")));
            feed.complete();
            pipeline.released().block(Duration.ofSeconds(5)); // before the sink closes
            again.dispose();
        }
    }

    @Test
    void releasedCompletesOnlyAfterTheRunningSinkCallReturnedAndTheRingIsFreed() throws Exception {
        HostDevice host = new HostDevice();
        HeldSink sink = new HeldSink(shape, 64);
        try (HostEngine engine = new HostEngine(host, shape, 4)) {
            long engineBuffers = host.liveBuffers();
            CapturePipeline pipeline = Pipelines.of(host, sink, 4, 4);
            Disposable run = Flux.range(0, 1000)
                    .map(i -> (EngineEvent) engine.step(i, new long[] {i % 64}, (t, l, k) -> Routing.id(i, 0, l, k, 300)))
                    .transform(pipeline)
                    .subscribe();
            assertTrue(sink.awaitHeld(5));
            run.dispose();
            CompletableFuture<Void> released = pipeline.released().toFuture();
            Thread.sleep(50);
            assertFalse(released.isDone(), "not released while the sink thread is inside scatter");
            sink.release();
            released.get(5, TimeUnit.SECONDS);
            assertFalse(sink.insideScatter(), "released after the sink call returned");
            assertFalse(pipeline.isRunning());
            assertEquals(engineBuffers, host.liveBuffers(), "the ring is freed when released completes");
            sink.close(); // safe now
            assertThrows(IllegalStateException.class, () -> sink.read(1), "a closed sink refuses use instead of crashing");
        }
    }

    @Test
    void aSinkClosedUnderTheSinkThreadFailsThePipelineInsteadOfCrashingTheJvm() throws Exception {
        HostDevice host = new HostDevice();
        CompletableFuture<Throwable> sinkThreadError = new CompletableFuture<>();
        HeldSink sink = new HeldSink(shape, 64);
        try (HostEngine engine = new HostEngine(host, shape, 4)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 4, 4);
            Flux.range(0, 1000)
                    .map(i -> (EngineEvent) engine.step(i, new long[] {i % 64}, (t, l, k) -> Routing.id(i, 0, l, k, 300)))
                    .transform(pipeline)
                    .subscribe(e -> { }, sinkThreadError::complete);
            assertTrue(sink.awaitHeld(5));
            // a careless caller closes the sink while the sink thread is about to write into it
            CompletableFuture<Void> closing = CompletableFuture.runAsync(sink::close);
            Thread.sleep(20);
            sink.release();
            closing.get(5, TimeUnit.SECONDS);
            pipeline.released().block(Duration.ofSeconds(5));
            Throwable e = sinkThreadError.get(5, TimeUnit.SECONDS);
            assertNotNull(e, "the pipeline failed on the closed sink instead of crashing the JVM");
            assertTrue(e.getCause().getMessage().contains("slot store of 64 slots is closed"), e.getCause().getMessage());
        }
    }

    @Test
    void reSubscribingInReactionToTheTerminalSignalFindsThePipelineReleased() {
        HostDevice host = new HostDevice();
        try (HostEngine engine = new HostEngine(host, shape, 4); MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64)) {
            long engineBuffers = host.liveBuffers();
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 4);
            AtomicInteger round = new AtomicInteger();
            Flux<EngineEvent> oneRound = Flux.defer(() -> {
                int r = round.getAndIncrement();
                return Flux.range(0, 3).map(i -> (EngineEvent) engine.step(r * 3L + i, new long[] {i}, (t, l, k) -> r));
            });
            StepVerifier.create(oneRound.transform(pipeline).repeat(199))
                    .expectNextCount(600)
                    .expectComplete()
                    .verify(Duration.ofSeconds(30));
            for (int i = 0; i < 50; i++) {
                Flux.range(0, 2).map(s -> (EngineEvent) engine.step(s, new long[] {s}, (t, l, k) -> 1)).transform(pipeline).blockLast();
                // no wait: blockLast returned, so the run is released
                assertFalse(pipeline.isRunning(), "released before the terminal signal");
            }
            pipeline.released().block(Duration.ofSeconds(5));
            assertEquals(engineBuffers, host.liveBuffers(), "every run's ring was freed");
        }
    }

    @Test
    void anErrorOfTheEngineStreamPassesThroughUnchangedAfterTheEventsBeforeIt() {
        HostDevice host = new HostDevice();
        try (HostEngine engine = new HostEngine(host, shape, 4); MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 4);
            IllegalStateException engineError = new IllegalStateException("engine crashed");
            Flux<EngineEvent> events = Flux.concat(
                    Flux.range(0, 3).map(i -> (EngineEvent) engine.step(i, new long[] {i}, (t, l, k) -> 7)),
                    Flux.error(engineError));
            StepVerifier.create(events.transform(pipeline))
                    .expectNextCount(3)
                    .expectErrorSatisfies(e -> assertSame(engineError, e))
                    .verify(Duration.ofSeconds(5));
            assertFalse(pipeline.isRunning());
        }
    }

    @Test
    void theSinkStageNeverEmitsBeyondDownstreamDemand() throws Exception {
        HostDevice host = new HostDevice();
        try (HostEngine engine = new HostEngine(host, shape, 4); MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 4, 4);
            AtomicLong requested = new AtomicLong();
            AtomicLong received = new AtomicLong();
            AtomicLong overflow = new AtomicLong();
            CountDownLatch done = new CountDownLatch(1);
            Flux.range(0, 300)
                    .map(i -> (EngineEvent) engine.step(i, new long[] {i % 64}, (t, l, k) -> Routing.id(i, 0, l, k, 300)))
                    .transform(pipeline)
                    .subscribe(new BaseSubscriber<EngineEvent>() {
                        @Override
                        protected void hookOnSubscribe(Subscription subscription) {
                            requested.set(1);
                            request(1);
                        }

                        @Override
                        protected void hookOnNext(EngineEvent value) {
                            if (received.incrementAndGet() > requested.get()) {
                                overflow.incrementAndGet();
                            }
                            if (received.get() % 7 == 0) {
                                // ask for more later, from another thread: the sink thread must wait meanwhile
                                Schedulers.parallel().schedule(() -> {
                                    requested.addAndGet(3);
                                    request(3);
                                }, 1, TimeUnit.MILLISECONDS);
                            } else if (received.get() == requested.get()) {
                                requested.addAndGet(1);
                                request(1);
                            }
                        }

                        @Override
                        protected void hookFinally(reactor.core.publisher.SignalType type) {
                            done.countDown();
                        }
                    });
            assertTrue(done.await(20, TimeUnit.SECONDS));
            assertEquals(300, received.get());
            assertEquals(0, overflow.get(), "events emitted beyond the subscriber's demand");
        }
    }
}
