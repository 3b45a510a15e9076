package dev.routingreplay.core.pipeline;

import java.lang.invoke.VarHandle;
import java.util.concurrent.locks.LockSupport;

/**
 * Wakes a run's sink thread when something it waits for happened: a new event (engine thread), a completed copy
 * (the backend's completion), downstream demand or a cancellation. {@link #wake} is cheap when the thread is not
 * parked and never allocates; any thread may call it.
 */
final class SinkWaker {
    private volatile Thread thread;
    private volatile boolean parked;

    /** The sink thread, as it starts its loop. */
    void attach(Thread sinkThread) {
        thread = sinkThread;
    }

    /** The sink thread, before it re-checks and idles ({@code true}) and after ({@code false}). */
    void parking(boolean parking) {
        parked = parking;
    }

    void wake() {
        VarHandle.fullFence();
        if (parked) {
            Thread t = thread;
            if (t != null) {
                LockSupport.unpark(t);
            }
        }
    }
}
