package dev.routingreplay.cuda;

import dev.routingreplay.core.device.CaptureListener;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import jcuda.driver.CUevent;
import jcuda.driver.CUresult;
import jcuda.driver.CUstream;
import jcuda.driver.JCudaDriver;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.agrona.concurrent.IdleStrategy;

/**
 * Tells each capture's listener, in enqueue order, once its copy-complete event has completed. One per ring; the
 * engine thread registers (after recording the event), the notifier's own thread reports.
 */
abstract class CompletionNotifier implements AutoCloseable {
    /** Called on the engine thread right after slot {@code index}'s copy-complete event was recorded. */
    abstract void register(int index, CaptureListener listener);

    /** Returns once every registered capture was reported; stops the notifier's thread. */
    @Override
    public abstract void close();

    static CompletionNotifier create(CompletionStrategy strategy, CudaDevice device, CUstream copyStream, CUevent[] copied) {
        return new Waiting(device, copied, strategy == CompletionStrategy.BLOCKING_SYNC);
    }

    /**
     * A dedicated thread that waits for the oldest in-flight copy: by polling {@code cuEventQuery} with Agrona's
     * backoff idle strategy (spin, yield, park up to 50 us), or by blocking in {@code cuEventSynchronize}. With no
     * copy in flight it parks until {@link #register} unparks it.
     */
    static final class Waiting extends CompletionNotifier {
        private static final long MAX_PARK_NANOS = TimeUnit.MICROSECONDS.toNanos(50);
        private final CudaDevice device;
        private final CUevent[] copied;
        private final boolean blocking;
        private final int[] order;
        private final CaptureListener[] listeners;
        private final Thread thread;
        /** The copy thread's wait for a copy in flight: 200 spins, 200 yields, then parks from 1 us up to 50 us. */
        private final IdleStrategy pollIdle = new BackoffIdleStrategy(200, 200, 1_000, MAX_PARK_NANOS);
        private volatile long submitted;
        private volatile long completed;
        private volatile boolean stopping;
        private volatile boolean idle;

        Waiting(CudaDevice device, CUevent[] copied, boolean blocking) {
            this.device = device;
            this.copied = copied;
            this.blocking = blocking;
            this.order = new int[copied.length];
            this.listeners = new CaptureListener[copied.length];
            this.thread = new Thread(this::loop, blocking ? "r3-cuda-sync" : "r3-cuda-poll");
            thread.setDaemon(true);
            thread.start();
        }

        @Override
        void register(int index, CaptureListener listener) {
            long seq = submitted;
            order[(int) (seq % order.length)] = index;
            listeners[index] = listener;
            submitted = seq + 1;
            if (idle) {
                LockSupport.unpark(thread);
            }
        }

        private void loop() {
            device.bind();
            for (;;) {
                long done = completed;
                if (done == submitted) {
                    if (stopping) {
                        return;
                    }
                    idle = true;
                    if (done == submitted && !stopping) {
                        LockSupport.parkNanos(MAX_PARK_NANOS * 20);
                    }
                    idle = false;
                    continue;
                }
                int index = order[(int) (done % order.length)];
                int r = blocking ? JCudaDriver.cuEventSynchronize(copied[index]) : JCudaDriver.cuEventQuery(copied[index]);
                if (r == CUresult.CUDA_ERROR_NOT_READY) {
                    pollIdle.idle();
                    continue;
                }
                pollIdle.reset();
                CaptureListener listener = listeners[index];
                completed = done + 1;
                listener.onCaptureComplete(index, r == CUresult.CUDA_SUCCESS ? null
                        : new CudaException(blocking ? "cuEventSynchronize" : "cuEventQuery", r));
            }
        }

        @Override
        public void close() {
            stopping = true;
            LockSupport.unpark(thread);
            boolean interrupted = false;
            while (thread.isAlive()) {
                try {
                    thread.join();
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
            if (interrupted) {
                Thread.currentThread().interrupt();
            }
        }
    }
}
