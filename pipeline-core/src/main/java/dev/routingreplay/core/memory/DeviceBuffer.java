package dev.routingreplay.core.memory;

/**
 * A block of device memory owned by a {@link RoutingDevice}. Backends hand out their own implementation; the
 * pipeline only passes buffers back to the device that made them.
 */
public interface DeviceBuffer extends AutoCloseable {
    /** Size in bytes; constant for the buffer's life. */
    long byteSize();

    /** Frees the memory. Idempotent; the buffer must not be used afterwards. */
    @Override
    void close();
}
