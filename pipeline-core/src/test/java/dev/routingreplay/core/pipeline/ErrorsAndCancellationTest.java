package dev.routingreplay.core.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.testing.DelegatingDevice;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Pipelines;
import dev.routingreplay.core.testing.Routing;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.test.StepVerifier;

class ErrorsAndCancellationTest {
    private final RoutingShape shape = Pipelines.smallUint16();

    private static void awaitStopped(CapturePipeline pipeline, HostDevice host, long liveBuffersAllowed) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while ((pipeline.isRunning() || host.liveBuffers() > liveBuffersAllowed) && System.nanoTime() < deadline) {
            Thread.sleep(5);
        }
    }

    @Test
    void aDeviceErrorTerminatesWithTheStepIdAndFreesTheRing() throws Exception {
        HostDevice host = new HostDevice();
        DelegatingDevice device = new DelegatingDevice(host,
                step -> step.stepId() == 7 ? new IllegalStateException("CUDA_ERROR_LAUNCH_FAILED in cuMemcpyDtoHAsync") : null);
        try (HostEngine engine = new HostEngine(host, shape, 4); MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64)) {
            long engineBuffers = host.liveBuffers();
            CapturePipeline pipeline = Pipelines.of(device, sink, 4, 4);
            StepVerifier.create(Flux.range(0, 20)
                            .map(i -> (EngineEvent) engine.step(i, new long[] {i}, (t, l, k) -> Routing.id(i, 0, l, k, 300)))
                            .transform(pipeline))
                    .expectNextCount(7)
                    .expectErrorSatisfies(e -> {
                        CapturePipelineException p = assertInstanceOf(CapturePipelineException.class, e);
                        assertEquals(7, p.stepId());
                        assertTrue(p.getMessage().startsWith("step 7: device copy failed: CUDA_ERROR_LAUNCH_FAILED"), p.getMessage());
                    })
                    .verify(Duration.ofSeconds(10));
            awaitStopped(pipeline, host, engineBuffers);
            assertFalse(pipeline.isRunning());
            assertEquals(engineBuffers, host.liveBuffers(), "every ring buffer was freed");
            assertEquals(7, pipeline.metrics().snapshot().steps(), "steps before the failure were flushed");
        }
    }

    @Test
    void aSinkErrorTerminatesNamingTheEvent() {
        HostDevice host = new HostDevice();
        MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64) {
            @Override
            public void finish(RequestFinished request) {
                throw new UncheckedIOException(new IOException("No space left on device"));
            }
        };
        try (HostEngine engine = new HostEngine(host, shape, 4); sink) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 4);
            Flux<EngineEvent> events = Flux.just(0, 1, 2).map(i -> i == 0 ? new RequestAdmitted("req-9")
                    : i == 1 ? engine.step(1, new long[] {3}, (t, l, k) -> 5) : new RequestFinished("req-9", new int[] {3}));
            StepVerifier.create(events.transform(pipeline))
                    .expectNextCount(2)
                    .expectErrorSatisfies(e -> {
                        assertInstanceOf(CapturePipelineException.class, e);
                        assertTrue(e.getMessage().contains("finish of request req-9: sink failed"), e.getMessage());
                        assertInstanceOf(UncheckedIOException.class, e.getCause());
                    })
                    .verify(Duration.ofSeconds(10));
        }
    }

    @Test
    void cancellationFreesEveryRingSlotAndNativeBuffer() throws Exception {
        HostDevice host = new HostDevice();
        CountDownLatch inSink = new CountDownLatch(1);
        AtomicBoolean release = new AtomicBoolean();
        MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64) {
            @Override
            public int scatter(CapturedStep step) {
                inSink.countDown();
                while (!release.get()) {
                    Thread.onSpinWait();
                }
                // reading the ring's host memory here must still be safe after the cancel
                int rows = super.scatter(step);
                assertEquals(step.stepId(), step.stepId());
                return rows;
            }
        };
        try (HostEngine engine = new HostEngine(host, shape, 4); sink) {
            long engineBuffers = host.liveBuffers();
            CapturePipeline pipeline = Pipelines.of(host, sink, 4, 4);
            Disposable run = Flux.range(0, 1000)
                    .map(i -> (EngineEvent) engine.step(i, new long[] {i % 64}, (t, l, k) -> Routing.id(i, 0, l, k, 300)))
                    .transform(pipeline)
                    .subscribe();
            assertTrue(inSink.await(5, TimeUnit.SECONDS));
            assertTrue(host.liveBuffers() > engineBuffers, "the ring is allocated while running");
            run.dispose();
            Thread.sleep(50);
            assertTrue(host.liveBuffers() > engineBuffers, "the ring is not freed under a running sink call");
            release.set(true);
            awaitStopped(pipeline, host, engineBuffers);
            assertFalse(pipeline.isRunning(), "the run cleaned up");
            assertEquals(engineBuffers, host.liveBuffers(), "every ring buffer was freed");
            assertEquals(0, pipeline.metrics().ringOccupancy());
        }
    }

    @Test
    void aPipelineRunsOnceAtATime() throws Exception {
        HostDevice host = new HostDevice();
        try (MemoryRoutingSink sink = new MemoryRoutingSink(shape, 8)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 2, 4);
            Disposable first = Flux.<EngineEvent>never().transform(pipeline).subscribe();
            StepVerifier.create(Flux.<EngineEvent>empty().transform(pipeline))
                    .expectErrorSatisfies(e -> assertTrue(e.getMessage().contains("already running"), e.getMessage()))
                    .verify(Duration.ofSeconds(5));
            first.dispose();
            awaitStopped(pipeline, host, 0);
            StepVerifier.create(Flux.<EngineEvent>empty().transform(pipeline)).expectComplete().verify(Duration.ofSeconds(5));
        }
    }
}
