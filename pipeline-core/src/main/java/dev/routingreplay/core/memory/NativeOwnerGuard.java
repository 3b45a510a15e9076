package dev.routingreplay.core.memory;

import java.util.concurrent.atomic.AtomicIntegerFieldUpdater;
import java.util.concurrent.locks.LockSupport;

/**
 * Guards an owner of native memory against use after close: every use runs between {@link #enter} and
 * {@link #exit}; {@link #close} waits for a running use to leave and then makes every later {@link #enter} throw.
 * So closing from another thread never frees memory under a running use (which would crash the JVM), and a use
 * after close is an {@link IllegalStateException}, never a crash.
 *
 * <p>The owner is single-threaded by contract; a second thread entering while a use runs is refused too. Cost per
 * use: two uncontended atomic writes, no allocation.
 */
public final class NativeOwnerGuard {
    private static final int IDLE = 0;
    private static final int IN_USE = 1;
    private static final int CLOSED = 2;
    private static final AtomicIntegerFieldUpdater<NativeOwnerGuard> STATE =
            AtomicIntegerFieldUpdater.newUpdater(NativeOwnerGuard.class, "state");

    private final String owner;
    private volatile int state;

    /** A guard for {@code owner}, a short description used in error messages ("slot store of 1024 slots"). */
    public NativeOwnerGuard(String owner) {
        this.owner = owner;
    }

    /**
     * Starts a use named {@code operation}.
     *
     * @throws IllegalStateException when the owner is closed, or another thread is using it
     */
    public void enter(String operation) {
        if (!STATE.compareAndSet(this, IDLE, IN_USE)) {
            throw new IllegalStateException(state == CLOSED
                    ? owner + " is closed; " + operation + " refused"
                    : owner + " is in use by another thread; " + operation + " refused (it is single-threaded)");
        }
    }

    /** Ends the use started by {@link #enter}. */
    public void exit() {
        STATE.compareAndSet(this, IN_USE, IDLE);
    }

    /**
     * Marks the owner closed once no use runs, waiting for a running one to leave.
     *
     * @return true for the call that closed it (which then frees the memory), false when it was already closed
     */
    public boolean close() {
        for (int spins = 0;; spins++) {
            int s = state;
            if (s == CLOSED) {
                return false;
            }
            if (s == IDLE && STATE.compareAndSet(this, IDLE, CLOSED)) {
                return true;
            }
            if (spins < 1000) {
                Thread.onSpinWait();
            } else {
                LockSupport.parkNanos(100_000);
            }
        }
    }

    /** Whether {@link #close} has run. */
    public boolean isClosed() {
        return state == CLOSED;
    }
}
