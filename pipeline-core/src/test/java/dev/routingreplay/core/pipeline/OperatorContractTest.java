package dev.routingreplay.core.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.testing.HeldSink;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Pipelines;
import dev.routingreplay.core.testing.Routing;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.reactivestreams.Subscription;
import reactor.core.Disposable;
import reactor.core.Scannable;
import reactor.core.publisher.BaseSubscriber;
import reactor.core.publisher.Flux;

/** The stages behave as Reactor operators do: scannable, and every event either acknowledged or discarded. */
class OperatorContractTest {
    private final RoutingShape shape = Pipelines.smallUint16();

    @Test
    void bothStagesAreScannableWithTheirRunStyleAndBuffers() throws Exception {
        HostDevice host = new HostDevice();
        try (HostEngine engine = new HostEngine(host, shape, 4); MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64)) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 4, 4);
            CountDownLatch subscribed = new CountDownLatch(1);
            Subscription[] held = new Subscription[1];
            BaseSubscriber<EngineEvent> subscriber = new BaseSubscriber<>() {
                @Override
                protected void hookOnSubscribe(Subscription subscription) {
                    held[0] = subscription;
                    subscribed.countDown(); // requests nothing: events wait in the sink stage
                }
            };
            Flux.range(0, 10).map(i -> (EngineEvent) engine.step(i, new long[] {i}, (t, l, k) -> 1)).transform(pipeline).subscribe(subscriber);
            assertTrue(subscribed.await(5, TimeUnit.SECONDS));
            Map<String, Scannable> stages = Scannable.from(held[0]).parents()
                    .filter(s -> s.stepName().startsWith("r3"))
                    .collect(Collectors.toMap(Scannable::stepName, s -> s));
            Scannable sinkStage = stages.get("r3SinkStage");
            Scannable deviceStage = stages.get("r3DeviceStage");
            assertEquals(Scannable.Attr.RunStyle.ASYNC, sinkStage.scan(Scannable.Attr.RUN_STYLE));
            assertEquals(Scannable.Attr.RunStyle.SYNC, deviceStage.scan(Scannable.Attr.RUN_STYLE));
            assertEquals(16, sinkStage.scan(Scannable.Attr.PREFETCH));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (sinkStage.scan(Scannable.Attr.BUFFERED) < 4 && System.nanoTime() < deadline) {
                Thread.sleep(5);
            }
            assertEquals(4, sinkStage.scan(Scannable.Attr.BUFFERED), "a full ring of captures waits for downstream demand");
            assertEquals(0L, sinkStage.scan(Scannable.Attr.REQUESTED_FROM_DOWNSTREAM));
            assertEquals(Boolean.FALSE, sinkStage.scan(Scannable.Attr.CANCELLED));
            subscriber.dispose();
            assertEquals(Boolean.TRUE, deviceStage.scan(Scannable.Attr.CANCELLED));
            pipeline.released().block(Duration.ofSeconds(5));
        }
    }

    @Test
    void everyEventTheEngineDeliveredIsAcknowledgedOrDiscardedOnCancel() throws Exception {
        HostDevice host = new HostDevice();
        HeldSink sink = new HeldSink(shape, 64, 5);
        try (HostEngine engine = new HostEngine(host, shape, 4); sink) {
            CapturePipeline pipeline = Pipelines.of(host, sink, 4, 4);
            AtomicInteger delivered = new AtomicInteger();
            AtomicInteger acknowledged = new AtomicInteger();
            List<Object> discarded = new java.util.concurrent.CopyOnWriteArrayList<>();
            Disposable run = Flux.range(0, 1000)
                    .map(i -> (EngineEvent) engine.step(i, new long[] {i % 64}, (t, l, k) -> Routing.id(i, 0, l, k, 300)))
                    .doOnNext(e -> delivered.incrementAndGet())
                    .transform(pipeline)
                    .doOnNext(e -> acknowledged.incrementAndGet())
                    .doOnDiscard(EngineEvent.class, discarded::add)
                    .subscribe();
            assertTrue(sink.awaitHeld(5));
            Thread.sleep(20); // the ring fills behind step 5
            run.dispose();
            sink.release();
            pipeline.released().block(Duration.ofSeconds(5));
            assertTrue(discarded.size() >= 3, "the captures behind step 5 were discarded: " + discarded.size());
            assertEquals(delivered.get(), acknowledged.get() + discarded.size(),
                    "delivered " + delivered + ", acknowledged " + acknowledged + ", discarded " + discarded.size());
        }
    }
}
