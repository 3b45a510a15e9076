package dev.routingreplay.core.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.testing.DelegatingDevice;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Pipelines;
import dev.routingreplay.core.testing.Routing;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import org.junit.jupiter.api.Test;
import reactor.core.Disposable;

class EngineFeedTest {
    private final RoutingShape shape = Pipelines.smallUint16();

    @Test
    void anEngineLoopWaitsForRingSlotsAndEveryStepIsStored() throws Exception {
        HostDevice host = new HostDevice();
        DelegatingDevice device = new DelegatingDevice(host, step -> null);
        MemoryRoutingSink slowSink = new MemoryRoutingSink(shape, 64) {
            @Override
            public int scatter(CapturedStep step) {
                LockSupport.parkNanos(200_000);
                return super.scatter(step);
            }
        };
        try (HostEngine engine = new HostEngine(host, shape, 4); slowSink) {
            CapturePipeline pipeline = Pipelines.of(device, slowSink, 2, 4);
            EngineFeed feed = new EngineFeed();
            assertFalse(feed.tryEmit(new RequestAdmitted("early")), "nothing is taken before the pipeline subscribes");
            CountDownLatch done = new CountDownLatch(1);
            Disposable run = feed.flux().transform(pipeline).doFinally(s -> done.countDown()).subscribe();
            long waited = 0;
            long loopStart = System.nanoTime();
            for (int i = 0; i < 500; i++) {
                int step = i;
                waited += feed.emit(engine.step(step, new long[] {i % 64}, (t, l, k) -> Routing.id(step, 0, l, k, 300)));
            }
            long loopNanos = System.nanoTime() - loopStart;
            assertTrue(waited <= loopNanos, "waited " + waited + " ns within a loop of " + loopNanos + " ns");
            feed.complete();
            assertTrue(done.await(10, TimeUnit.SECONDS));
            run.dispose();
            assertEquals(500, pipeline.metrics().snapshot().steps());
            assertTrue(device.maxInFlight.get() <= 2);
            assertTrue(waited > 0, "the engine waited for ring slots");
            for (int i = 436; i < 500; i++) {
                assertEquals(Routing.id(i, 0, 2, 1, 300), slowSink.read(i % 64).id(0, 2, 1));
            }
            IllegalStateException e = assertThrows(IllegalStateException.class, () -> feed.emit((EngineEvent) new RequestAdmitted("late")));
            assertTrue(e.getMessage().contains("no longer takes events"), e.getMessage());
        }
    }
}
