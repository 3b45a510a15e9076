package dev.routingreplay.core.pipeline;

import dev.routingreplay.core.event.EngineEvent;
import java.util.concurrent.atomic.AtomicIntegerFieldUpdater;
import java.util.concurrent.atomic.AtomicLongFieldUpdater;
import org.reactivestreams.Subscription;
import reactor.core.CoreSubscriber;
import reactor.core.Scannable;
import reactor.core.publisher.Operators;
import reactor.util.context.Context;

/**
 * The device stage: an operator between the engine's event stream and the rest of the pipeline.
 *
 * <p>Signals: for each event it receives, it emits one {@link Staged} (the ring slot holding the capture, or the
 * lifecycle event), on the engine's thread, inside the engine's {@code onNext}; so the copy out of the engine's
 * routing buffer is enqueued before {@code onNext} returns. An invalid event terminates the stream with a
 * {@link CapturePipelineException} and cancels the engine.
 *
 * <p>Demand: it requests from the engine no more events than there are free ring slots and downstream demand:
 * {@code requested-but-not-received <= min(free ring slots, downstream demand)}, since any requested event may be
 * a capture. A full ring therefore shows up to the engine as missing demand before it launches its next step.
 * Requests to the engine are issued from whichever thread frees capacity (subscriber, completion or sink thread).
 *
 * <p>An event that arrives after cancellation is handed to the {@code onDiscard} hook. {@link Scannable}: parent,
 * actual, requested from downstream, terminated, cancelled, run style (synchronous: the engine's thread).
 */
final class DeviceStageSubscriber implements CoreSubscriber<EngineEvent>, Subscription, Scannable {
    private static final AtomicLongFieldUpdater<DeviceStageSubscriber> DEMAND =
            AtomicLongFieldUpdater.newUpdater(DeviceStageSubscriber.class, "demand");
    private static final AtomicLongFieldUpdater<DeviceStageSubscriber> OUTSTANDING =
            AtomicLongFieldUpdater.newUpdater(DeviceStageSubscriber.class, "outstanding");
    private static final AtomicIntegerFieldUpdater<DeviceStageSubscriber> WIP =
            AtomicIntegerFieldUpdater.newUpdater(DeviceStageSubscriber.class, "wip");

    private final CoreSubscriber<? super Staged> actual;
    private final PipelineRun run;
    /** The downstream's context plus this run, so an {@link EngineFeed} upstream can tell why the run ended. */
    private final Context context;
    private Subscription upstream;
    private volatile long demand;
    private volatile long outstanding;
    private volatile int wip;
    private volatile boolean cancelled;
    private boolean done;
    /** Drain loop only: when the current ring-full span began, or 0. */
    private long ringFullSince;

    DeviceStageSubscriber(CoreSubscriber<? super Staged> actual, PipelineRun run) {
        this.actual = actual;
        this.run = run;
        this.context = actual.currentContext().put(PipelineRun.class, run);
        run.attach(this);
    }

    @Override
    public Context currentContext() {
        return context;
    }

    @Override
    public void onSubscribe(Subscription s) {
        if (Operators.validate(upstream, s)) {
            upstream = s;
            actual.onSubscribe(this);
        }
    }

    @Override
    public void onNext(EngineEvent event) {
        if (done) {
            Operators.onNextDropped(event, currentContext());
            return;
        }
        if (cancelled) {
            Operators.onDiscard(event, context);
            return;
        }
        Staged staged;
        try {
            staged = run.stage(event);
        } catch (Throwable t) {
            Throwable error = event == null ? t
                    : new CapturePipelineException(event, t instanceof IllegalArgumentException ? "validation" : "device enqueue", t);
            if (cancelled) {
                Operators.onErrorDropped(error, currentContext());
                return;
            }
            run.recordFailure(error); // before the cancel, so an engine feed reports why the pipeline stopped
            upstream.cancel();
            onError(error);
            return;
        }
        // order matters: stage() took the ring slot before the outstanding count drops (see topUp)
        OUTSTANDING.decrementAndGet(this);
        if (demand != Long.MAX_VALUE) {
            DEMAND.decrementAndGet(this);
        }
        actual.onNext(staged);
        topUp();
    }

    @Override
    public void onError(Throwable t) {
        if (done) {
            Operators.onErrorDropped(t, currentContext());
            return;
        }
        done = true;
        actual.onError(t);
    }

    @Override
    public void onComplete() {
        if (done) {
            return;
        }
        done = true;
        actual.onComplete();
    }

    @Override
    public void request(long n) {
        if (Operators.validate(n)) {
            Operators.addCap(DEMAND, this, n);
            topUp();
        }
    }

    @Override
    public void cancel() {
        cancelled = true;
        upstream.cancel();
    }

    /**
     * Requests from the engine what free ring slots and downstream demand allow. Serialized by a work-in-progress
     * counter; reads {@code outstanding} before the free count, so a concurrent capture can only make it request
     * less, never more, than allowed.
     */
    void topUp() {
        if (WIP.getAndIncrement(this) != 0) {
            return;
        }
        int missed = 1;
        for (;;) {
            if (!cancelled && !done) {
                long out = outstanding;
                int free = run.freeSlots();
                long wanted = demand;
                long allowed = Math.min(free, wanted) - out;
                if (free == 0 && out == 0 && wanted > 0) {
                    if (ringFullSince == 0) {
                        ringFullSince = System.nanoTime();
                    }
                } else if (free > 0 && ringFullSince != 0) {
                    run.metrics().ringWaited(System.nanoTime() - ringFullSince);
                    ringFullSince = 0;
                }
                if (allowed > 0) {
                    OUTSTANDING.addAndGet(this, allowed);
                    upstream.request(allowed);
                }
            }
            missed = WIP.addAndGet(this, -missed);
            if (missed == 0) {
                return;
            }
        }
    }

    @Override
    public Object scanUnsafe(Attr key) {
        if (key == Attr.PARENT) {
            return upstream;
        }
        if (key == Attr.ACTUAL) {
            return actual;
        }
        if (key == Attr.REQUESTED_FROM_DOWNSTREAM) {
            return demand;
        }
        if (key == Attr.TERMINATED) {
            return done;
        }
        if (key == Attr.CANCELLED) {
            return cancelled;
        }
        if (key == Attr.RUN_STYLE) {
            return Attr.RunStyle.SYNC;
        }
        return null;
    }

    @Override
    public String stepName() {
        return "r3DeviceStage";
    }
}
