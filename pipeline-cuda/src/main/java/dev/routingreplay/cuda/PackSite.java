package dev.routingreplay.cuda;

/**
 * Where the CUDA backend packs a step's routing (engine ids, int32 or int64, to the compact dtype, with validation).
 * Both sites produce the same ring slot, byte for byte ({@code GpuPackTest}).
 */
public enum PackSite {
    /**
     * The {@code r3_pack} kernel on the compute stream, then a copy of the packed (1 to 4 times smaller) slot to pinned
     * host memory on the ring's copy stream. The least PCIe traffic; the choice when the backend shares the engine's
     * process and stream.
     */
    DEVICE,
    /**
     * No kernel: the compute stream copies the step's raw ids and slot mapping to pinned host memory (copy engine
     * only), and the completion thread packs them on the CPU with the host backend's pack before reporting the
     * capture. For a sidecar that shares the GPU with an engine in another process: nothing of the sidecar's
     * context competes with the engine's kernels for the compute engine.
     */
    HOST
}
