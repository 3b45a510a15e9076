package dev.routingreplay.core.pipeline;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.testing.Pipelines;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import reactor.core.Exceptions;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Operators;
import reactor.test.StepVerifier;
import reactor.test.publisher.TestPublisher;

/**
 * The sink stage alone against a publisher that breaks Reactive Streams: signals after a terminal one are dropped
 * (never applied to the sink, never passed on), and emitting beyond demand ends the stream at once with an overflow
 * error, every event it held discarded.
 */
class SinkStageGuardsTest {
    private static final Duration WAIT = Duration.ofSeconds(5);

    private final HostDevice host = new HostDevice();
    private MemoryRoutingSink sink;
    private PipelineRun run;
    private TestPublisher<Staged> engine;

    @BeforeEach
    void openRun() {
        sink = new MemoryRoutingSink(Pipelines.smallUint16(), 64);
        CapturePipeline pipeline = Pipelines.of(host, sink, 4, 4);
        run = new PipelineRun(pipeline.config(), () -> { });
        engine = TestPublisher.createNoncompliant(TestPublisher.Violation.REQUEST_OVERFLOW, TestPublisher.Violation.CLEANUP_ON_TERMINATE);
    }

    @AfterEach
    void close() {
        run.whenReleased().block(WAIT);
        sink.close();
    }

    private Flux<EngineEvent> stage() {
        return engine.flux().transform(Operators.<Staged, EngineEvent>lift((scannable, actual) -> new SinkStage(actual, run)));
    }

    private static StagedLifecycle cleared(long round) {
        return new StagedLifecycle(new RoundCleared(round));
    }

    @Test
    void anEventAfterCompletionIsDroppedAndNeverReachesTheSinkOrDownstream() {
        StagedLifecycle before = cleared(1);
        StagedLifecycle after = cleared(2);
        StepVerifier.create(stage(), 0)
                .then(() -> engine.next(before).complete().next(after).complete())
                .thenRequest(10) // the event before completion waited for demand; the one after it must not follow
                .expectNext(before.event())
                .expectComplete()
                .verifyThenAssertThat(WAIT)
                .hasDroppedExactly(after.event())
                .hasNotDiscardedElements();
    }

    @Test
    void aSecondErrorAndEventsAfterAnErrorAreDropped() {
        StagedLifecycle before = cleared(1);
        StagedLifecycle after = cleared(2);
        IllegalStateException first = new IllegalStateException("first");
        IllegalStateException second = new IllegalStateException("second");
        StepVerifier.create(stage(), 0)
                .then(() -> engine.next(before).error(first).next(after).error(second).complete())
                .thenRequest(10) // an upstream error is signalled after the events queued before it were flushed
                .expectNext(before.event())
                .expectErrorSatisfies(e -> assertSame(first, e))
                .verifyThenAssertThat(WAIT)
                .hasDroppedExactly(after.event())
                .hasDroppedErrorsSatisfying(errors -> assertEquals(List.of(second), List.copyOf(errors)));
    }

    @Test
    void emittingBeyondDemandFailsAtOnceWithOverflowAndDiscardsWhatWasHeld() {
        List<StagedLifecycle> events = new ArrayList<>();
        for (int i = 0; i <= 16; i++) { // the stage requested 16 (its prefetch at ring depth 4); the 17th is over demand
            events.add(cleared(i));
        }
        List<Object> expectedDiscards = new ArrayList<>();
        expectedDiscards.add(events.get(16).event()); // refused as it arrived
        for (int i = 0; i < 16; i++) {
            expectedDiscards.add(events.get(i).event()); // held, never applied: no downstream demand
        }
        StepVerifier.create(stage(), 0)
                .then(() -> events.forEach(engine::next))
                .expectErrorMatches(Exceptions::isOverflow) // at once, though nothing downstream asked for the events held
                .verifyThenAssertThat(WAIT)
                .hasDiscardedExactly(expectedDiscards.toArray());
        engine.assertCancelled();
        assertTrue(Exceptions.isOverflow(run.failure()), "the run records the overflow: " + run.failure());
    }
}
