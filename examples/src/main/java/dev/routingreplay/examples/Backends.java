package dev.routingreplay.examples;

import dev.routingreplay.core.device.RoutingDevice;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.cuda.CudaDevice;
import dev.routingreplay.cuda.CompletionStrategy;
import dev.routingreplay.cuda.CudaException;
import dev.routingreplay.cuda.PackSite;

/** Opens a device backend by name (the {@code --backend} option of {@code r3 run} and {@code r3 sidecar}). */
public final class Backends {
    private Backends() {
    }

    /**
     * {@code host}: the embedded host backend. {@code cuda}: the CUDA backend on device 0.
     *
     * @throws IllegalArgumentException naming the backend when it is unknown or unavailable (no driver, no device)
     */
    static RoutingDevice open(String name) {
        return open(name, 0);
    }

    /**
     * {@code host}: the embedded host backend. {@code cuda}: the CUDA backend on device {@code ordinal}.
     *
     * @throws IllegalArgumentException naming the backend when it is unknown or unavailable (no driver, no device)
     */
    public static RoutingDevice open(String name, int ordinal) {
        return open(name, ordinal, PackSite.DEVICE);
    }

    /**
     * As {@link #open(String, int)}, the CUDA backend packing at {@code cudaPackSite} (the host backend always packs on
     * the host).
     *
     * @throws IllegalArgumentException naming the backend when it is unknown or unavailable (no driver, no device)
     */
    public static RoutingDevice open(String name, int ordinal, PackSite cudaPackSite) {
        switch (name) {
            case "host":
                return new HostDevice();
            case "cuda":
                try {
                    return CudaDevice.open(ordinal, CompletionStrategy.DEFAULT, cudaPackSite);
                } catch (CudaException e) {
                    throw new IllegalArgumentException("backend 'cuda': " + e.getMessage(), e);
                }
            default:
                throw new IllegalArgumentException("unknown backend '" + name + "'; expected host or cuda");
        }
    }
}
