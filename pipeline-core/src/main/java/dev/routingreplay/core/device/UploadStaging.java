package dev.routingreplay.core.device;

import dev.routingreplay.core.memory.DeviceBuffer;
import java.nio.ByteBuffer;

/**
 * Host memory whose bytes the device copies into its own memory in compute-stream order, without the caller waiting:
 * pinned memory and an asynchronous copy on CUDA, a plain copy on the host backend. The engine bridge uploads a step's
 * slot mapping that came in its STEP message through one of these per engine buffer.
 *
 * <p>Use: {@link #awaitCopied()}, write {@link #buffer()}, {@link #enqueueCopyTo}; repeat. Confined to one thread.
 */
public interface UploadStaging extends AutoCloseable {
    /** The staging memory, native byte order, as many bytes as were asked for; write it only after {@link #awaitCopied()}. */
    ByteBuffer buffer();

    /**
     * Enqueues a copy of the first {@code bytes} bytes of {@link #buffer()} to offset 0 of {@code dst} on the device's
     * compute stream, after the work enqueued there so far and before any enqueued later; returns without waiting.
     *
     * @throws IllegalArgumentException when {@code dst} is not this device's writable memory or is smaller than {@code bytes}
     */
    void enqueueCopyTo(DeviceBuffer dst, int bytes);

    /** Waits until the last copy enqueued from this staging has read it (at once when none is in flight). */
    void awaitCopied();

    /** Waits for the last copy, then frees the staging memory. Idempotent. */
    @Override
    void close();
}
