package dev.routingreplay.core.pipeline;

import dev.routingreplay.core.InvalidEventException;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.device.StagingRing;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.sink.RoutingSink;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Sinks;
import reactor.core.scheduler.Schedulers;

/**
 * The state of one subscription to a {@link CapturePipeline}: the open ring, its slots, the sink thread, the live
 * request ids. Each method says which thread calls it; ordering between them is what Reactive Streams gives
 * (serial {@code onNext}, happens-before through the operators' queues), so none of it takes a lock.
 *
 * <p>End of a run: the sink thread releases the run (frees the ring, marks the pipeline idle, completes
 * {@link #whenReleased()}) as it exits, before it signals a terminal event downstream; a run whose sink thread never
 * started is released on Reactor's bounded elastic scheduler.
 */
final class PipelineRun {
    private final RingSpec spec;
    private final StagingRing ring;
    private final RingSlot[] slots;
    private final RoutingSink sink;
    private final PipelineMetrics metrics;
    private final String sinkThreadName;
    private final SinkStage.Waker waker = new SinkStage.Waker();
    private final AtomicInteger freeSlots;
    private final AtomicBoolean released = new AtomicBoolean();
    private final Sinks.Empty<Void> releasedSignal = Sinks.empty();
    private final Runnable onClosed;
    private volatile boolean sinkThreadStarted;
    private volatile boolean sinkThreadExited;
    /** The first error that ended the run (set before the engine's stream is cancelled), or null. */
    private volatile Throwable failure;
    /** Engine thread only. */
    private int head;
    /** Engine thread only. */
    private final Set<String> liveRequests = new HashSet<>();
    /** Set once by the device stage; told when a ring slot frees up. */
    private volatile DeviceStageSubscriber deviceStage;

    PipelineRun(CapturePipeline.Config config, Runnable onClosed) {
        this.spec = config.ringSpec();
        this.sink = config.sink();
        this.metrics = config.metrics();
        this.onClosed = onClosed;
        this.ring = config.device().openRing(spec);
        try {
            this.slots = new RingSlot[spec.depth()];
            for (int i = 0; i < slots.length; i++) {
                slots[i] = new RingSlot(i, new CapturedStep(spec, ring.hostSlot(i)), waker);
            }
            this.freeSlots = new AtomicInteger(spec.depth());
            this.sinkThreadName = "r3-sink-" + config.name();
        } catch (RuntimeException | Error e) {
            ring.close();
            throw e;
        }
    }

    RingSpec spec() {
        return spec;
    }

    SinkStage.Waker waker() {
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
        return freeSlots.get();
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
        if (event instanceof CaptureStep step) {
            validate(step);
            RingSlot slot = slots[head];
            if (slot.inUse) {
                throw new IllegalStateException("ring slot " + head + " is still in use; demand accounting is broken");
            }
            head = head + 1 == slots.length ? 0 : head + 1;
            slot.inUse = true;
            freeSlots.decrementAndGet();
            metrics.slotAcquired();
            slot.arm(step);
            ring.enqueueCapture(slot.index, step, slot);
            return slot;
        }
        if (event instanceof RequestAdmitted admitted) {
            if (!liveRequests.add(admitted.requestId())) {
                throw new InvalidEventException("duplicate request id '" + admitted.requestId() + "': it is already live");
            }
        } else if (event instanceof RequestFinished finished) {
            requireLive(finished.requestId());
            int[] s = finished.slots();
            for (int i = 0; i < s.length; i++) {
                checkSlot(s[i], "slots[" + i + "]");
            }
            liveRequests.remove(finished.requestId());
        } else if (event instanceof RequestAborted aborted) {
            requireLive(aborted.requestId());
            liveRequests.remove(aborted.requestId());
        } else if (event instanceof SlotsMoved moved) {
            for (int i = 0; i < moved.sourceSlots().length; i++) {
                checkSlot(moved.sourceSlots()[i], "sourceSlots[" + i + "]");
                checkSlot(moved.destinationSlots()[i], "destinationSlots[" + i + "]");
            }
        } else if (event instanceof RoundCleared) {
            liveRequests.clear();
        } else if (event == null) {
            throw new NullPointerException("event must not be null");
        }
        return new StagedLifecycle(event);
    }

    private void validate(CaptureStep step) {
        RoutingShape shape = spec.shape();
        int tokens = step.tokenCount();
        if (tokens < 0) {
            throw new InvalidEventException("tokenCount must not be negative, was " + tokens);
        }
        if (tokens > spec.maxTokensPerStep()) {
            throw new InvalidEventException("tokenCount=" + tokens + " exceeds the ring slot capacity maxTokensPerStep="
                    + spec.maxTokensPerStep());
        }
        if (step.routing().layers() != shape.moeLayers()) {
            throw new InvalidEventException("routing.layers=" + step.routing().layers() + " does not match the pipeline's moeLayers="
                    + shape.moeLayers());
        }
        if (step.routing().topK() != shape.topK()) {
            throw new InvalidEventException("routing.topK=" + step.routing().topK() + " does not match the pipeline's topK="
                    + shape.topK());
        }
        if (step.routing().capacityTokens() < tokens) {
            throw new InvalidEventException("routing buffer holds " + step.routing().capacityTokens() + " tokens, tokenCount="
                    + tokens);
        }
        long now = step.routing().generation();
        if (step.generation() != now) {
            throw new InvalidEventException("routing buffer generation is " + now + " but the step carries generation "
                    + step.generation() + ": the engine overwrote its routing buffer before the pipeline received this step. "
                    + "An operator between the engine and the pipeline (publishOn, cache, buffer, ...) delays events; the "
                    + "pipeline must receive each step inside the engine's own onNext");
        }
        if (step.slotMapping().capacityTokens() < tokens) {
            throw new InvalidEventException("slotMapping buffer holds " + step.slotMapping().capacityTokens()
                    + " tokens, tokenCount=" + tokens);
        }
    }

    private void requireLive(String requestId) {
        if (!liveRequests.contains(requestId)) {
            throw new InvalidEventException("unknown request id '" + requestId
                    + "': not admitted, or already finished or aborted");
        }
    }

    private void checkSlot(int slot, String field) {
        if (slot < 0 || slot >= spec.slotCapacity()) {
            throw new InvalidEventException(field + " = " + slot + " is out of range [0, " + spec.slotCapacity() + ")");
        }
    }

    /** Sink thread: applies the event to the sink, releases the ring slot, returns the acknowledged event. */
    EngineEvent flush(Staged staged) {
        EngineEvent event = staged.event();
        if (staged instanceof RingSlot slot) {
            try {
                slot.view.checkValid();
            } catch (RuntimeException e) {
                throw new CapturePipelineException(event, "validation", e);
            }
            int rows;
            try {
                rows = sink.scatter(slot.view);
            } catch (RuntimeException e) {
                throw new CapturePipelineException(event, "sink scatter", e);
            }
            metrics.flushed(rows, (long) rows * spec.shape().rowBytes());
            CaptureStep step = slot.step();
            release(slot);
            return step;
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

    /** Sink thread, on normal completion. */
    void flushSink() {
        sink.flush();
    }

    private void release(RingSlot slot) {
        slot.inUse = false;
        metrics.slotReleased();
        freeSlots.incrementAndGet();
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
            for (RingSlot slot : slots) {
                if (slot.inUse) {
                    slot.inUse = false;
                    metrics.slotReleased();
                }
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
