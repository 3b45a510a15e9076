package dev.routingreplay.core.pipeline;

import dev.routingreplay.core.device.CaptureListener;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;

/**
 * One slot of the staging ring as the pipeline sees it, preallocated and reused every time the ring wraps. It is
 * also the completion of its capture: the backend's {@link CaptureListener} call marks it complete and wakes the sink
 * stage, which allocates nothing per step.
 */
final class RingSlot implements Staged, CaptureListener {
    final int index;
    final CapturedStep view;
    private final CapturedStep.Owner aim;
    private final SinkWaker waker;
    /** Set on the engine thread before the capture is enqueued; read by the sink thread after completion. */
    private CaptureStep step;
    private Throwable error;
    private volatile boolean complete;

    RingSlot(int index, CapturedStep.Owner view, SinkWaker waker) {
        this.index = index;
        this.aim = view;
        this.view = view.view();
        this.waker = waker;
    }

    /** Prepares the slot for {@code step}; must happen before the capture is enqueued. */
    void arm(CaptureStep step) {
        this.step = step;
        this.error = null;
        this.aim.aim(step.stepId(), step.tokenCount());
        this.complete = false;
    }

    CaptureStep step() {
        return step;
    }

    @Override
    public EngineEvent event() {
        return step;
    }

    /** Whether the backend reported this capture's copy (successful or not). */
    boolean isComplete() {
        return complete;
    }

    /** The backend's error for this capture, or null; valid once {@link #isComplete()}. */
    Throwable error() {
        return error;
    }

    @Override
    public void onCaptureComplete(int ringIndex, Throwable failure) {
        this.error = failure;
        this.complete = true;
        waker.wake();
    }
}
