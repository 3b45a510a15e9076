package dev.routingreplay.core.device;

/**
 * An event shared between two processes on one device (see {@link InterprocessDevice}). On the host backend every
 * method is a no-op and the handle is empty: host work is synchronous and the bridge's messages order it.
 */
public interface InterprocessEvent extends AutoCloseable {
    /** The bytes another process opens this event with (CUDA: 64 bytes; host: empty). A copy. */
    byte[] handle();

    /** Records the event on the device's compute stream, after the work enqueued there so far. Never blocks. */
    void recordOnCompute();

    /** Makes the device's compute stream wait for the event's latest record before any work enqueued later. Never blocks the caller. */
    void waitOnCompute();

    /** Releases this process's reference to the event. Idempotent. */
    @Override
    void close();
}
