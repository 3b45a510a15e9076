package dev.routingreplay.core.pipeline;

import dev.routingreplay.core.device.CaptureListener;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import java.util.concurrent.atomic.AtomicIntegerFieldUpdater;
import org.reactivestreams.Publisher;
import org.reactivestreams.Subscriber;
import org.reactivestreams.Subscription;
import reactor.core.publisher.Operators;

/**
 * One slot of the staging ring as the pipeline sees it, preallocated and reused every time the ring wraps.
 *
 * <p>It is also the completion publisher of its capture: a one-shot {@link Publisher} that emits itself once the
 * backend reports the host copy complete and the subscriber has requested, then completes; or signals the
 * backend's error wrapped with the step id. Reusing it per step is what keeps the hot path free of allocation.
 */
final class RingSlot implements Staged, CaptureListener, Publisher<Staged>, Subscription {
    private static final int REQUESTED = 1;
    private static final int COMPLETED = 2;
    private static final int EMITTED = 4;
    private static final int CANCELLED = 8;
    private static final AtomicIntegerFieldUpdater<RingSlot> STATE =
            AtomicIntegerFieldUpdater.newUpdater(RingSlot.class, "state");

    final int index;
    final CapturedStep view;
    /** Set on the engine thread before the capture is enqueued; read after completion. */
    private CaptureStep step;
    private Throwable error;
    private Subscriber<? super Staged> subscriber;
    private volatile int state;
    /** True from acquire to release; touched by the engine thread (acquire) and the sink thread (release). */
    volatile boolean inUse;

    RingSlot(int index, CapturedStep view) {
        this.index = index;
        this.view = view;
    }

    /** Prepares the slot for {@code step}; must happen before the capture is enqueued. */
    void arm(CaptureStep step) {
        this.step = step;
        this.error = null;
        this.subscriber = null;
        this.view.aim(step.stepId(), step.tokenCount());
        STATE.set(this, 0);
    }

    CaptureStep step() {
        return step;
    }

    @Override
    public EngineEvent event() {
        return step;
    }

    @Override
    public void onCaptureComplete(int ringIndex, Throwable failure) {
        this.error = failure;
        addFlag(COMPLETED);
    }

    @Override
    public void subscribe(Subscriber<? super Staged> s) {
        this.subscriber = s;
        s.onSubscribe(this);
    }

    @Override
    public void request(long n) {
        if (Operators.validate(n)) {
            addFlag(REQUESTED);
        }
    }

    @Override
    public void cancel() {
        addFlag(CANCELLED);
    }

    private void addFlag(int flag) {
        for (;;) {
            int s = state;
            int next = s | flag;
            boolean emit = (next & (REQUESTED | COMPLETED)) == (REQUESTED | COMPLETED) && (next & (EMITTED | CANCELLED)) == 0;
            if (emit) {
                next |= EMITTED;
            }
            if (STATE.compareAndSet(this, s, next)) {
                if (emit) {
                    emit();
                }
                return;
            }
        }
    }

    private void emit() {
        Subscriber<? super Staged> s = subscriber;
        if (error != null) {
            s.onError(new CapturePipelineException(step, "device copy", error));
        } else {
            s.onNext(this);
            s.onComplete();
        }
    }
}
