package dev.routingreplay.core.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.testing.DelegatingDevice;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Pipelines;
import dev.routingreplay.core.testing.Routing;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.scheduler.Schedulers;

class BackpressureTest {
    private final RoutingShape shape = Pipelines.smallUint16();

    /** A sink whose scatter waits for a permit per step. */
    static final class GatedSink extends MemoryRoutingSink {
        final Semaphore permits = new Semaphore(0);
        final CountDownLatch firstScatter = new CountDownLatch(1);

        GatedSink(RoutingShape shape, int slots) {
            super(shape, slots);
        }

        @Override
        public int scatter(CapturedStep step) {
            firstScatter.countDown();
            permits.acquireUninterruptibly();
            return super.scatter(step);
        }
    }

    @Test
    void aBlockedSinkStopsDemandAtRingDepthAndLosesNothing() throws Exception {
        int depth = 3;
        int steps = 50;
        HostDevice host = new HostDevice();
        DelegatingDevice device = new DelegatingDevice(host, step -> null);
        AtomicLong requestedFromEngine = new AtomicLong();
        try (HostEngine engine = new HostEngine(host, shape, 4); GatedSink sink = new GatedSink(shape, 64)) {
            CapturePipeline pipeline = Pipelines.of(device, sink, depth, 4);
            CountDownLatch done = new CountDownLatch(1);
            Disposable run = Flux.range(0, steps)
                    .doOnRequest(requestedFromEngine::addAndGet)
                    .map(i -> (EngineEvent) engine.step(i, new long[] {i}, (t, l, k) -> Routing.id(i, 0, l, k, 300)))
                    .transform(pipeline)
                    .doOnTerminate(done::countDown)
                    .subscribe();
            assertTrue(sink.firstScatter.await(5, TimeUnit.SECONDS));
            // give the pipeline every chance to over-request while the sink is stuck
            Thread.sleep(200);
            assertEquals(depth, requestedFromEngine.get(), "the engine is asked for exactly as many steps as ring slots");
            assertEquals(depth, device.enqueued.get());
            assertEquals(depth, pipeline.metrics().ringOccupancy());
            sink.permits.release(steps);
            assertTrue(done.await(10, TimeUnit.SECONDS));
            run.dispose();
            assertTrue(device.maxInFlight.get() <= depth);
            assertEquals(steps, pipeline.metrics().snapshot().steps());
            assertEquals(steps, pipeline.metrics().snapshot().rows());
            assertTrue(pipeline.metrics().snapshot().ringWaits() >= 1, "waiting for a ring slot is measured");
            assertTrue(pipeline.metrics().snapshot().ringWaitNanos() >= TimeUnit.MILLISECONDS.toNanos(150),
                    "the 200 ms stall is measured: " + pipeline.metrics().snapshot().describe());
            for (int i = 0; i < steps; i++) {
                assertEquals(Routing.id(i, 0, 1, 1, 300), readId(sink, i, 1, 1));
            }
        }
    }

    private static int readId(MemoryRoutingSink sink, int slot, int layer, int k) {
        return sink.read(slot).id(0, layer, k);
    }

    @Test
    void stepNPlusOneIsEnqueuedWhileStepNIsFlushed() throws Exception {
        HostDevice host = new HostDevice();
        CountDownLatch secondEnqueued = new CountDownLatch(1);
        DelegatingDevice device = new DelegatingDevice(host, step -> {
            if (step.stepId() == 1) {
                secondEnqueued.countDown();
            }
            return null;
        });
        try (HostEngine engine = new HostEngine(host, shape, 4); GatedSink sink = new GatedSink(shape, 64)) {
            CapturePipeline pipeline = Pipelines.of(device, sink, 2, 4);
            CountDownLatch done = new CountDownLatch(1);
            Flux.range(0, 2)
                    .map(i -> (EngineEvent) engine.step(i, new long[] {i}, (t, l, k) -> Routing.id(i, 0, l, k, 300)))
                    .subscribeOn(Schedulers.single())
                    .transform(pipeline)
                    .doOnTerminate(done::countDown)
                    .subscribe();
            assertTrue(sink.firstScatter.await(5, TimeUnit.SECONDS), "step 0 reached the sink");
            // the sink is inside step 0's scatter and cannot leave it until step 1 was enqueued: overlap
            assertTrue(secondEnqueued.await(5, TimeUnit.SECONDS), "step 1's copy was enqueued while step 0 flushed");
            assertEquals(0, pipeline.metrics().snapshot().steps(), "step 0 is still being flushed");
            sink.permits.release(2);
            assertTrue(done.await(5, TimeUnit.SECONDS));
            assertEquals(2, pipeline.metrics().snapshot().steps());
        }
    }

    @Test
    void depthOneStillCompletesWithoutOverlap() {
        HostDevice host = new HostDevice();
        DelegatingDevice device = new DelegatingDevice(host, step -> null);
        try (HostEngine engine = new HostEngine(host, shape, 4); MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64)) {
            CapturePipeline pipeline = Pipelines.of(device, sink, 1, 4);
            Flux.range(0, 300)
                    .map(i -> (EngineEvent) engine.step(i, new long[] {i % 64}, (t, l, k) -> 1))
                    .transform(pipeline)
                    .blockLast(Duration.ofSeconds(10));
            assertEquals(1, device.maxInFlight.get());
            assertEquals(300, pipeline.metrics().snapshot().steps());
        }
    }
}
