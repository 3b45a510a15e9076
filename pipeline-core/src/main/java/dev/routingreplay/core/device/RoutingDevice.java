package dev.routingreplay.core.device;

import dev.routingreplay.core.memory.DeviceBuffer;
import java.nio.ByteBuffer;

/**
 * A device that holds the engine's routing and moves it to the host: the host backend (embedded default, no GPU)
 * or the CUDA backend. One instance per device context.
 */
public interface RoutingDevice extends AutoCloseable {
    /** A short name for logs and summaries, e.g. {@code host} or {@code cuda:0 (NVIDIA H100)}. */
    String name();

    /** Opens a staging ring sized by {@code spec}; the caller closes it. */
    StagingRing openRing(RingSpec spec);

    /** Allocates {@code bytes} of device memory (contents unspecified). */
    DeviceBuffer allocate(long bytes);

    /**
     * Copies {@code src}'s remaining bytes into {@code dst} at {@code dstOffset}, ordered after the work already
     * enqueued on the compute stream and complete when the method returns. For tests and simulated engines.
     */
    void write(DeviceBuffer dst, long dstOffset, ByteBuffer src);

    /** Copies {@code dst.remaining()} bytes from {@code src} at {@code srcOffset} into {@code dst}; synchronous. */
    void read(DeviceBuffer src, long srcOffset, ByteBuffer dst);

    /** Releases the device; buffers and rings it made must be closed first. */
    @Override
    void close();
}
