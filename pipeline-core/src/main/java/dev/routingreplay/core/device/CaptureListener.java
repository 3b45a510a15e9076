package dev.routingreplay.core.device;

/** Told once when a capture enqueued with {@link StagingRing#enqueueCapture} has landed in host memory. */
@FunctionalInterface
public interface CaptureListener {
    /**
     * Called exactly once per enqueued capture, from a backend thread, after the host copy of ring slot
     * {@code ringIndex} is complete and visible to the caller ({@code error == null}), or failed.
     * Must return quickly and must not call back into the device.
     */
    void onCaptureComplete(int ringIndex, Throwable error);
}
