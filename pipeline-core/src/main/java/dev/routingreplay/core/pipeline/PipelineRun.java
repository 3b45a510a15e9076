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
import reactor.core.scheduler.Schedulers;

/**
 * The state of one subscription to a {@link CapturePipeline}: the open ring, its slots, the sink thread, the live
 * request ids. Each method says which thread calls it; ordering between them is what Reactive Streams gives
 * (serial {@code onNext}, happens-before through the operators' queues), so none of it takes a lock.
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
    private final Runnable onClosed;
    private volatile boolean closeRequested;
    private volatile boolean sinkThreadStarted;
    private volatile boolean sinkThreadExited;
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
     * Any thread (the {@code Flux.using} cleanup), never blocking: frees the run's resources once the sink thread
     * has exited, so never under a running sink call. The sink thread frees them as it exits; when it never started
     * or already exited, Reactor's bounded elastic scheduler does (closing a ring waits for in-flight copies).
     */
    void close() {
        closeRequested = true;
        waker.wake();
        if (!sinkThreadStarted || sinkThreadExited) {
            // closing a ring blocks (it waits for in-flight copies); the caller may be a non-blocking thread
            Schedulers.boundedElastic().schedule(this::release);
        }
    }

    /** Sink thread, as it exits. */
    void sinkThreadExited() {
        sinkThreadExited = true;
        if (closeRequested) {
            release();
        }
    }

    private void release() {
        if (!released.compareAndSet(false, true)) {
            return;
        }
        try {
            for (RingSlot slot : slots) {
                if (slot.inUse) {
                    slot.inUse = false;
                    metrics.slotReleased();
                }
            }
            ring.close();
        } finally {
            onClosed.run();
        }
    }
}
