package dev.routingreplay.core.device;

import dev.routingreplay.core.memory.DeviceBuffer;

/**
 * A device whose pipeline can read memory that another process on the same device exported, and order its work
 * against that process's work with shared events: CUDA IPC on the GPU, mapped files on the host backend. The engine
 * bridge ({@code r3 sidecar}) opens an engine's routing and slot-mapping buffers through it.
 *
 * <p>Ordering contract: work the pipeline enqueues on the compute stream after {@link InterprocessEvent#waitOnCompute()}
 * runs after the exporter's last record of that event; {@link InterprocessEvent#recordOnCompute()} marks the point
 * after the work enqueued so far, which the exporter's stream can wait on.
 */
public interface InterprocessDevice extends RoutingDevice {
    /**
     * Opens {@code bytes} of memory at {@code offset} inside the allocation another process exported as
     * {@code handle} (CUDA: a 64-byte {@code cudaIpcMemHandle_t}; host: the UTF-8 path of a file both processes
     * map). Closing the returned buffer unmaps it; it never frees the exporter's memory.
     *
     * @throws IllegalArgumentException for a malformed handle or a range outside the allocation, naming both
     */
    DeviceBuffer openExportedBuffer(byte[] handle, long offset, long bytes);

    /**
     * Opens an event another process created for sharing and records (CUDA: a 64-byte {@code cudaIpcEventHandle_t};
     * host: an empty handle, since host work is ordered by the messages themselves).
     *
     * @throws IllegalArgumentException for a malformed handle
     */
    InterprocessEvent openExportedEvent(byte[] handle);

    /** Creates an event this process records and another process waits on; its {@link InterprocessEvent#handle()} is what to send. */
    InterprocessEvent createExportedEvent();

    /** Opens {@code bytes} of host staging memory that this device copies into its own memory in compute-stream order. */
    UploadStaging openUploadStaging(int bytes);
}
