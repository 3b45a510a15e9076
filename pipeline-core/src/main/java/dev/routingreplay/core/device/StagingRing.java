package dev.routingreplay.core.device;

import dev.routingreplay.core.event.CaptureStep;
import java.nio.ByteBuffer;

/**
 * A ring of {@code depth} staging slots, each a device staging buffer and a pinned host buffer laid out by
 * {@link RingSlotLayout}. The pipeline decides which slot is free; the ring only moves bytes.
 *
 * <p>Threading: {@link #enqueueCapture} is called from the engine's thread (the one that owns the compute
 * stream); listeners are called from a backend thread; {@link #hostSlot} memory may be read from any thread
 * after the slot's listener reported success and until the slot is enqueued again or the ring is closed.
 */
public interface StagingRing extends AutoCloseable {
    /** The spec the ring was opened with. */
    RingSpec spec();

    /**
     * Enqueues the capture of {@code step} into ring slot {@code index} and returns without waiting: on the
     * compute stream, pack the step's routing to the compact dtype (and its slot mapping to int32, validating
     * both) into the staging slot, so the engine's next forward pass may overwrite its buffers; then, without
     * making the compute stream wait, copy the used part of the staging slot to the host slot and tell
     * {@code listener}.
     *
     * @throws IllegalStateException when the ring is closed
     * @throws IllegalArgumentException when the step's buffers do not belong to this device
     */
    void enqueueCapture(int index, CaptureStep step, CaptureListener listener);

    /** The pinned host memory of slot {@code index} (native byte order, {@link RingSlotLayout}); do not write. */
    ByteBuffer hostSlot(int index);

    /**
     * Waits for every enqueued copy to finish, then frees the ring's device and host memory. Idempotent; after it,
     * {@link #enqueueCapture} fails and {@link #hostSlot} memory must not be touched.
     */
    @Override
    void close();
}
