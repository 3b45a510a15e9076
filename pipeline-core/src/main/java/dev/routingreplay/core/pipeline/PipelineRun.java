package dev.routingreplay.core.pipeline;

import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.device.StagingRing;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFault;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.sink.RoutingSink;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;
import org.agrona.concurrent.IdleStrategy;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Sinks;
import reactor.core.scheduler.Schedulers;

/**
 * The state of one subscription to a {@link CapturePipeline}: the open ring, its slot pool ({@link RingSlotPool}), the
 * event validator ({@link EventValidator}), the sink thread. Each method says which thread calls it; ordering between them is what Reactive Streams gives
 * (serial {@code onNext}, happens-before through the operators' queues), so none of it takes a lock.
 *
 * <p>End of a run: the sink thread releases the run (frees the ring, marks the pipeline idle, completes
 * {@link #whenReleased()}) as it exits, before it signals a terminal event downstream; a run whose sink thread never
 * started is released on Reactor's bounded elastic scheduler.
 */
final class PipelineRun {
    private final RingSpec spec;
    private final StagingRing ring;
    private final RingSlotPool slots;
    private final EventValidator validator;
    private final RoutingSink sink;
    private final PipelineMetrics metrics;
    private final String sinkThreadName;
    private final SinkWaker waker = new SinkWaker();
    private final AtomicBoolean released = new AtomicBoolean();
    private final Sinks.Empty<Void> releasedSignal = Sinks.empty();
    private final Runnable onClosed;
    private final IdleStrategy sinkIdle;
    private final Consumer<StepFault> onStepFault;
    private volatile boolean sinkThreadStarted;
    private volatile boolean sinkThreadExited;
    /** The first error that ended the run (set before the engine's stream is cancelled), or null. */
    private volatile Throwable failure;
    /** Set once by the device stage; told when a ring slot frees up. */
    private volatile DeviceStageSubscriber deviceStage;

    PipelineRun(CapturePipeline.Config config, Runnable onClosed) {
        this.spec = config.ringSpec();
        this.sink = config.sink();
        this.metrics = config.metrics();
        this.onClosed = onClosed;
        this.sinkIdle = config.sinkIdle().get();
        this.onStepFault = config.onStepFault();
        this.ring = config.device().openRing(spec);
        try {
            this.slots = new RingSlotPool(spec, ring, waker);
            this.validator = new EventValidator(spec);
            this.sinkThreadName = "r3-sink-" + config.name();
        } catch (RuntimeException | Error e) {
            ring.close();
            throw e;
        }
    }

    RingSpec spec() {
        return spec;
    }

    /** The sink thread's idle strategy, made for this run. */
    IdleStrategy sinkIdle() {
        return sinkIdle;
    }

    SinkWaker waker() {
        return waker;
    }

    /** Starts the run's sink thread running {@code loop}; once per run. */
    void startSinkThread(Runnable loop) {
        Thread t = new Thread(loop, sinkThreadName);
        t.setDaemon(true);
        sinkThreadStarted = true;
        t.start();
    }

    int freeSlots() {
        return slots.free();
    }

    void attach(DeviceStageSubscriber stage) {
        this.deviceStage = stage;
    }

    PipelineMetrics metrics() {
        return metrics;
    }

    /**
     * Engine thread, inside {@code onNext}: validates the event and, for a capture, takes the next ring slot and
     * enqueues the pack and copy. The caller guarantees a free slot exists (it only requested that many events).
     */
    Staged stage(EngineEvent event) {
        String fault = validator.check(event);
        if (event instanceof CaptureStep step) {
            RingSlot slot = slots.acquire();
            metrics.slotAcquired();
            slot.arm(step);
            ring.enqueueCapture(slot.index, step, slot);
            return slot;
        }
        return new StagedLifecycle(event, fault);
    }

    /** Sink thread: applies the event to the sink, releases the ring slot, returns the acknowledged event. */
    EngineEvent flush(Staged staged) {
        EngineEvent event = staged.event();
        if (staged instanceof RingSlot slot) {
            // ids and slots out of range dropped their tokens' rows in the pack: counted and told, the run goes on
            int badIds = slot.view.invalidIdCount();
            int badSlots = slot.view.invalidSlotCount();
            metrics.invalid(badIds, badSlots);
            StepFault fault = badIds + badSlots == 0 ? null : new StepFault(slot.view.stepId(), badSlots, slot.view.firstInvalidSlotToken(),
                    slot.view.firstInvalidSlotValue(), badIds, slot.view.firstInvalidIdToken());
            int rows;
            try {
                rows = sink.scatter(slot.view);
            } catch (RuntimeException e) {
                throw new CapturePipelineException(event, "sink scatter", e);
            }
            if (fault != null) {
                try {
                    onStepFault.accept(fault);
                } catch (RuntimeException e) {
                    // a listener's failure never ends the run
                }
            }
            metrics.flushed(rows, (long) rows * spec.shape().rowBytes());
            CaptureStep step = slot.step();
            release(slot);
            return step;
        }
        if (staged instanceof StagedLifecycle lifecycle && lifecycle.fault() != null) {
            metrics.requestFaulted();
            return new RequestFault(requestIdOf(event), event, lifecycle.fault());
        }
        try {
            if (event instanceof RequestFinished finished) {
                sink.finish(finished);
                metrics.requestFinished();
            } else if (event instanceof RequestAborted aborted) {
                sink.abort(aborted);
                metrics.requestAborted();
            } else if (event instanceof SlotsMoved moved) {
                sink.move(moved);
            } else if (event instanceof RoundCleared cleared) {
                sink.clear(cleared);
            } else if (event instanceof RequestAdmitted admitted) {
                sink.admit(admitted);
            }
        } catch (RuntimeException e) {
            throw new CapturePipelineException(event, "sink", e);
        }
        return event;
    }

    private static String requestIdOf(EngineEvent event) {
        if (event instanceof RequestFinished f) {
            return f.requestId();
        }
        if (event instanceof RequestAborted a) {
            return a.requestId();
        }
        if (event instanceof RequestAdmitted a) {
            return a.requestId();
        }
        return "";
    }

    /** Sink thread, on normal completion. */
    void flushSink() {
        sink.flush();
    }

    private void release(RingSlot slot) {
        slots.release(slot);
        metrics.slotReleased();
        DeviceStageSubscriber stage = deviceStage;
        if (stage != null) {
            stage.topUp();
        }
    }

    /**
     * Any thread (the {@code Flux.using} cleanup), never blocking: wakes the sink thread so it sees the terminal
     * signal or cancellation and releases the run as it exits. When the sink thread never started or already exited,
     * Reactor's bounded elastic scheduler releases the run (closing a ring waits for in-flight copies, and the caller
     * may be a non-blocking thread).
     */
    void close() {
        waker.wake();
        if (!sinkThreadStarted || sinkThreadExited) {
            Schedulers.boundedElastic().schedule(this::release);
        }
    }

    /** Sink thread, as it exits (after {@link #release()} on a terminal signal; on its own after a cancel). */
    void sinkThreadExited() {
        sinkThreadExited = true;
        release();
    }

    /**
     * Records the error that ends this run, before the engine's stream is cancelled, so an engine feeding the
     * pipeline learns why it stopped taking events. The first error wins.
     */
    void recordFailure(Throwable error) {
        if (failure == null) {
            failure = error;
        }
    }

    /** The error that ended this run, or null when it completed or was cancelled by its subscriber. */
    Throwable failure() {
        return failure;
    }

    /** Completes once the run's sink thread has left every sink call and the ring is freed; never errors. */
    Mono<Void> whenReleased() {
        return releasedSignal.asMono();
    }

    /**
     * Frees the ring (waiting for in-flight copies) and marks the pipeline idle, once; then completes
     * {@link #whenReleased()}. Called by the sink thread before it signals a terminal event, so a subscriber that
     * reacts to that signal (re-subscribing, closing the sink) finds the run released.
     *
     * @return the error from closing the ring, or null
     */
    Throwable release() {
        if (!released.compareAndSet(false, true)) {
            return null;
        }
        Throwable error = null;
        try {
            for (int n = slots.releaseAll(); n > 0; n--) {
                metrics.slotReleased();
            }
            ring.close();
        } catch (RuntimeException | Error e) {
            error = e;
        } finally {
            onClosed.run();
            releasedSignal.tryEmitEmpty();
        }
        return error;
    }
}
