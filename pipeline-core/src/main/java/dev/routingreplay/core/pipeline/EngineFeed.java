package dev.routingreplay.core.pipeline;

import dev.routingreplay.core.event.EngineEvent;
import java.util.Objects;
import java.util.concurrent.CancellationException;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.agrona.concurrent.IdleStrategy;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Sinks;

/**
 * How an engine's step loop feeds the pipeline from its own thread: {@code feed.flux().transform(pipeline)} once,
 * then {@link #emit} each event in engine order. The copy out of the engine's buffer is enqueued inside
 * {@code emit}, on the engine's thread, before it returns.
 *
 * <p>Backpressure: an event is handed over only when the pipeline has demand (a free ring slot), never buffered.
 * {@link #tryEmit} says {@code false} when there is none; {@link #emit} waits for it with the feed's Agrona
 * {@link IdleStrategy} (by default {@link #DEFAULT_IDLE}: 100 spins, then parks of 1 to 50 us), which is how a full
 * ring shows up to the engine before it launches its next forward pass. One engine thread emits; nothing is
 * allocated per event.
 *
 * <p>Failure: once the pipeline has failed, been cancelled or completed, {@link #tryEmit} and {@link #emit} throw an
 * {@link IllegalStateException} (within one park interval for a waiting {@code emit}) whose cause is the
 * pipeline's error, or a {@link CancellationException} when its subscriber cancelled it. The engine never waits
 * forever on a pipeline that is gone.
 */
public final class EngineFeed {
    /** The default wait for demand: 100 spins, then parks from 1 us doubling up to 50 us. */
    public static final Supplier<IdleStrategy> DEFAULT_IDLE = () -> new BackoffIdleStrategy(100, 0,
            TimeUnit.MICROSECONDS.toNanos(1), TimeUnit.MICROSECONDS.toNanos(50));
    private final IdleStrategy idle;
    private final Sinks.Many<EngineEvent> sink = Sinks.many().multicast().directAllOrNothing();
    private final Flux<EngineEvent> flux = Flux.deferContextual(context -> {
        PipelineRun run = context.getOrDefault(PipelineRun.class, null);
        return sink.asFlux().doOnSubscribe(s -> state = new Subscribed(run)).doOnCancel(this::cancelled);
    });
    /** Null until the pipeline subscribes; then who subscribed and whether it has cancelled. */
    private volatile Subscribed state;

    private record Subscribed(PipelineRun run, boolean cancelled) {
        Subscribed(PipelineRun run) {
            this(run, false);
        }
    }

    /** A feed that waits for demand with {@link #DEFAULT_IDLE}. */
    public EngineFeed() {
        this(DEFAULT_IDLE.get());
    }

    /**
     * A feed that waits for demand with {@code idle} (an Agrona strategy: {@code BusySpinIdleStrategy} for the lowest
     * latency on a dedicated core, {@code SleepingIdleStrategy} to spare the CPU). Used by the one emitting thread only.
     */
    public EngineFeed(IdleStrategy idle) {
        this.idle = Objects.requireNonNull(idle, "idle");
    }

    /** The events, for {@code transform(pipeline)}; subscribe it once at a time. */
    public Flux<EngineEvent> flux() {
        return flux;
    }

    private void cancelled() {
        Subscribed s = state;
        state = new Subscribed(s == null ? null : s.run(), true);
    }

    /**
     * Hands {@code event} to the pipeline if it has demand now.
     *
     * @return false when the pipeline is not subscribed yet or has no demand (the ring is full)
     * @throws IllegalStateException when the pipeline has failed, been cancelled or completed; its cause says why
     */
    public boolean tryEmit(EngineEvent event) {
        Sinks.EmitResult result = sink.tryEmitNext(event);
        switch (result) {
            case OK:
                return true;
            case FAIL_OVERFLOW:
            case FAIL_NON_SERIALIZED:
                return false;
            case FAIL_ZERO_SUBSCRIBER:
                Subscribed s = state;
                if (s == null || !s.cancelled()) {
                    return false; // not subscribed yet
                }
                throw stopped(event, s);
            default:
                throw new IllegalStateException("the pipeline no longer takes events (" + result + "); " + event.describe()
                        + " was not captured");
        }
    }

    private static IllegalStateException stopped(EngineEvent event, Subscribed s) {
        Throwable cause = s.run() == null ? null : s.run().failure();
        if (cause == null) {
            cause = new CancellationException("the pipeline's subscriber cancelled it");
        }
        return new IllegalStateException("the pipeline no longer takes events (" + cause.getMessage() + "); "
                + event.describe() + " was not captured", cause);
    }

    /**
     * Hands {@code event} to the pipeline, waiting for demand.
     *
     * @return the nanoseconds spent waiting for demand (0 when there was some)
     * @throws IllegalStateException when the pipeline has failed, been cancelled or completed; its cause says why
     */
    public long emit(EngineEvent event) {
        if (tryEmit(event)) {
            return 0;
        }
        long start = System.nanoTime();
        idle.reset();
        while (!tryEmit(event)) {
            idle.idle();
        }
        return System.nanoTime() - start;
    }

    /** Ends the event stream: the pipeline flushes what it holds and completes. */
    public void complete() {
        sink.tryEmitComplete();
    }
}
