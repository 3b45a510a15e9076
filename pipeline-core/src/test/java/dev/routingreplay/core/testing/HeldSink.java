package dev.routingreplay.core.testing;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * An in-memory sink whose {@link #scatter} holds the sink thread until the test {@link #release}s it: every step, or
 * only the step with a given id. A held call has not touched the store yet; after release it stores as usual.
 */
public class HeldSink extends MemoryRoutingSink {
    private final long heldStep;
    private final CountDownLatch entered = new CountDownLatch(1);
    private final CountDownLatch released = new CountDownLatch(1);
    private volatile boolean insideScatter;

    /** Holds every step's scatter until {@link #release}. */
    public HeldSink(RoutingShape shape, int slotCapacity) {
        this(shape, slotCapacity, -1);
    }

    /** Holds the scatter of step {@code heldStep} only (every step when negative). */
    public HeldSink(RoutingShape shape, int slotCapacity, long heldStep) {
        super(shape, slotCapacity);
        this.heldStep = heldStep;
    }

    @Override
    public int scatter(CapturedStep step) {
        if (heldStep >= 0 && step.stepId() != heldStep) {
            return super.scatter(step);
        }
        insideScatter = true;
        try {
            entered.countDown();
            boolean interrupted = false;
            while (true) {
                try {
                    released.await();
                    break;
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
            return super.scatter(step);
        } finally {
            insideScatter = false;
        }
    }

    /** Waits until the sink thread is held inside {@link #scatter}; false when it was not within {@code seconds}. */
    public boolean awaitHeld(long seconds) throws InterruptedException {
        return entered.await(seconds, TimeUnit.SECONDS);
    }

    /** Lets every held and later scatter go on. */
    public void release() {
        released.countDown();
    }

    /** Whether the sink thread is inside {@link #scatter} now (held, or storing). */
    public boolean insideScatter() {
        return insideScatter;
    }
}
