package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.pipeline.PipelineStats;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Routing;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.publisher.Flux;
import reactor.test.StepVerifier;

/** The store's own limits, at their edges, and what it reports back to the pipeline. */
class StoreLimitsTest {
    private static final RoutingShape SHAPE = new RoutingShape(3, 2, 100);

    @TempDir
    Path dir;

    @Test
    void aStepAndARequestOfExactlyTheLimitAreStoredAndTheRowCountExcludesPadding() {
        HostDevice device = new HostDevice();
        StoreConfig config = StoreConfig.builder(dir, SHAPE, 16).maxStepTokens(4).maxRequestTokens(8).minFreeBytes(0).build();
        try (HostEngine engine = new HostEngine(device, SHAPE, 4); ChronicleRoutingSink sink = ChronicleRoutingSink.open(config)) {
            CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(2).maxTokensPerStep(4).build();
            List<Integer> order = List.of(0, 1, 2, 3);
            Flux<EngineEvent> events = Flux.fromIterable(order).map(i -> switch (i) {
                case 0 -> new RequestAdmitted("edge");
                case 1 -> engine.step(1, new long[] {0, 1, 2, 3}, (t, l, k) -> Routing.id(1, t, l, k, 100));
                case 2 -> engine.step(2, new long[] {4, -1, 5, 6}, (t, l, k) -> Routing.id(2, t, l, k, 100)); // one padding token
                default -> new RequestFinished("edge", new int[] {0, 1, 2, 3, 4, 5, 6, 6});
            });
            StepVerifier.create(events.transform(pipeline)).expectNextCount(4).expectComplete().verify(Duration.ofSeconds(20));
            PipelineStats stats = pipeline.metrics().snapshot();
            assertEquals(7, stats.rows(), "the sink reports the rows it stored: 4 + 3 (padding is not a row)");
        }
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            List<RequestRouting> all = replay.requests().collectList().block(Duration.ofSeconds(20));
            assertEquals(1, all.size());
            RequestRouting r = all.get(0);
            assertEquals(8, r.seqLen(), "a request of exactly maxRequestTokens is recorded");
            assertEquals(Routing.id(1, 3, 2, 1, 100), r.id(3, 2, 1));
            assertEquals(Routing.id(2, 0, 0, 0, 100), r.id(4, 0, 0));
            assertTrue(r.id(7, 1, 1) == Routing.id(2, 3, 1, 1, 100), "slot 6 holds step 2's last token");
        }
    }
}
