package dev.routingreplay.examples;

import dev.routingreplay.core.device.RoutingDevice;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.sink.ChronicleRoutingSink;
import dev.routingreplay.sink.ReplayedRequest;
import dev.routingreplay.sink.RoutingReplay;
import dev.routingreplay.sink.StoreConfig;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicLong;
import reactor.core.publisher.Flux;
import reactor.core.scheduler.Schedulers;

/**
 * The pipeline as one part of a larger reactive application: the rollout (engine, capture pipeline, Chronicle
 * store), a trainer that tails the store live and checks each request, and a heartbeat, merged into one
 * {@code Flux} of status lines with Reactor's own operators. Taking the first {@code n} trained requests cancels
 * everything, mid-rollout; every stage cleans up after itself.
 */
public final class ComposedService {
    private ComposedService() {
    }

    /**
     * What the run saw.
     *
     * @param captured requests whose finish the pipeline acknowledged
     * @param trained requests the live trainer checked
     * @param mismatches ids that differed from the gate's
     * @param heartbeats heartbeat ticks merged in
     */
    public record Summary(long captured, long trained, long mismatches, long heartbeats) {
    }

    /** Runs the composed application until the trainer has checked {@code trainRequests} requests. */
    public static Summary run(Path dir, EngineConfig config, RoutingDevice device, int trainRequests) {
        AtomicLong captured = new AtomicLong();
        AtomicLong trained = new AtomicLong();
        AtomicLong mismatches = new AtomicLong();
        AtomicLong heartbeats = new AtomicLong();
        try (SimulatedEngine engine = new SimulatedEngine(config, device);
                ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, config.shape(), engine.slotCapacity()));
                RoutingReplay replay = RoutingReplay.open(dir)) {
            CapturePipeline pipeline = CapturePipeline.builder().name("composed").device(device).sink(sink).ringDepth(3)
                    .maxTokensPerStep(engine.maxTokensPerStep()).build();
            Flux<String> rollout = engine.events()
                    .transform(pipeline)
                    .ofType(RequestFinished.class)
                    .doOnNext(f -> captured.incrementAndGet())
                    .map(f -> "captured " + f.requestId());
            Flux<String> trainer = replay.fromStartThenLive()
                    .map(ReplayedRequest::routing)
                    .concatMap(r -> TrainerCheck.verify(Flux.just(r), config.shape()))
                    .doOnNext(report -> {
                        trained.incrementAndGet();
                        mismatches.addAndGet(report.mismatches());
                    })
                    .map(TrainerCheck.Report::describe);
            Flux<String> heartbeat = Flux.interval(Duration.ofMillis(20), Schedulers.parallel())
                    .onBackpressureDrop() // a heartbeat may be skipped when the merged output lags; it must not fail the run
                    .doOnNext(t -> heartbeats.incrementAndGet())
                    .map(t -> "heartbeat " + t);
            Flux.merge(rollout, trainer, heartbeat)
                    .publishOn(Schedulers.parallel())
                    .takeUntil(line -> trained.get() >= trainRequests)
                    .blockLast(Duration.ofMinutes(2));
            awaitStopped(pipeline);
        }
        return new Summary(captured.get(), trained.get(), mismatches.get(), heartbeats.get());
    }

    private static void awaitStopped(CapturePipeline pipeline) {
        try {
            pipeline.released().block(Duration.ofSeconds(10));
        } catch (IllegalStateException timeout) {
            throw new IllegalStateException("the pipeline did not clean up within 10 s of cancellation", timeout);
        }
    }
}
