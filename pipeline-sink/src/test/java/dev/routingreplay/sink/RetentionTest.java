package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Routing;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.stream.Stream;
import net.openhft.chronicle.queue.rollcycles.TestRollCycles;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Sinks;

class RetentionTest {
    private static final RoutingShape SHAPE = new RoutingShape(2, 2, 64);

    @TempDir
    Path dir;

    private static long cq4Files(Path queue) throws IOException {
        try (Stream<Path> s = Files.list(queue)) {
            return s.filter(p -> p.toString().endsWith(".cq4")).count();
        }
    }

    private static void nextSecond() throws InterruptedException {
        long ms = System.currentTimeMillis();
        Thread.sleep(1000 - ms % 1000 + 50);
    }

    private static List<String> ids(Flux<ReplayedRequest> flux) {
        return flux.map(r -> r.routing().requestId()).collectList().block(Duration.ofSeconds(10));
    }

    @Test
    void cyclesEveryNamedReaderConsumedAreDeletedAndTheJournalKeepsOnlyWhatRecoveryNeeds() throws Exception {
        StoreConfig config = StoreConfig.of(dir, SHAPE, 64).withRollCycle(TestRollCycles.TEST_SECONDLY)
                .withRetention(List.of("trainer"), null);
        HostDevice device = new HostDevice();
        Sinks.Many<EngineEvent> events = Sinks.many().unicast().onBackpressureBuffer();
        try (HostEngine engine = new HostEngine(device, SHAPE, 4); ChronicleRoutingSink sink = ChronicleRoutingSink.open(config);
                RoutingReplay replay = RoutingReplay.open(dir)) {
            CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(2).maxTokensPerStep(4).build();
            Flux<EngineEvent> acked = events.asFlux().transform(pipeline).publish().autoConnect(0);
            String[] names = {"a", "b", "c", "d"};
            for (int r = 0; r < names.length; r++) {
                int req = r;
                var done = acked.filter(e -> e instanceof RequestFinished f && f.requestId().equals(names[req])).next().toFuture();
                events.tryEmitNext(new RequestAdmitted(names[r]));
                events.tryEmitNext(engine.step(r, new long[] {r}, (t, l, k) -> Routing.id(req, 0, l, k, 64)));
                events.tryEmitNext(new RequestFinished(names[r], new int[] {r}));
                done.get();
                if (r == 1) {
                    assertEquals(List.of("a", "b"), ids(replay.fromReader("trainer", false)), "the trainer consumed a and b");
                }
                if (r == 2) {
                    // the reader sits in b's cycle until it reads on: only now can b's cycle go
                    assertEquals(List.of("c"), ids(replay.fromReader("trainer", false)), "the trainer resumes after b");
                }
                if (r < names.length - 1) {
                    nextSecond();
                }
            }
            assertEquals(List.of("c", "d"), ids(replay.fromStart()), "cycles of a and b were consumed and deleted");
            assertEquals(2, cq4Files(dir.resolve("requests")));
            assertTrue(cq4Files(dir.resolve("journal")) >= 4);

            var cleared = acked.filter(e -> e instanceof RoundCleared).next().toFuture();
            events.tryEmitNext(new RoundCleared(1));
            cleared.get();
            assertEquals(1, cq4Files(dir.resolve("journal")), "the journal before the clear's cycle is gone");
            events.tryEmitComplete();
        }
        try (ChronicleRoutingSink reopened = ChronicleRoutingSink.open(config)) {
            assertEquals(1, reopened.round(), reopened.recovery().describe());
        }
    }

    @Test
    void cyclesOlderThanTheAgeBoundAreDeletedEvenUnread() throws Exception {
        StoreConfig config = StoreConfig.of(dir, SHAPE, 64).withRollCycle(TestRollCycles.TEST_SECONDLY)
                .withRetention(List.of(), Duration.ofMillis(500));
        HostDevice device = new HostDevice();
        try (HostEngine engine = new HostEngine(device, SHAPE, 4); ChronicleRoutingSink sink = ChronicleRoutingSink.open(config)) {
            for (int r = 0; r < 3; r++) {
                int req = r;
                CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(2).maxTokensPerStep(4).build();
                Flux.just(0, 1, 2).map(i -> i == 0 ? new RequestAdmitted("r" + req)
                        : i == 1 ? engine.step(req, new long[] {req}, (t, l, k) -> 1)
                        : (EngineEvent) new RequestFinished("r" + req, new int[] {req})).transform(pipeline).blockLast(Duration.ofSeconds(10));
                if (r < 2) {
                    nextSecond();
                    Thread.sleep(600);
                }
            }
        }
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            assertEquals(List.of("r2"), replay.requests().map(RequestRouting::requestId).collectList().block(Duration.ofSeconds(10)));
        }
    }
}
