package dev.routingreplay.examples;

import dev.routingreplay.core.device.RoutingDevice;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.cuda.CudaDevice;
import dev.routingreplay.cuda.CudaException;

/** Opens a device backend by name. */
final class Backends {
    private Backends() {
    }

    /**
     * {@code host}: the embedded host backend. {@code cuda}: the CUDA backend on device 0.
     *
     * @throws IllegalArgumentException naming the backend when it is unknown or unavailable (no driver, no device)
     */
    static RoutingDevice open(String name) {
        switch (name) {
            case "host":
                return new HostDevice();
            case "cuda":
                try {
                    return CudaDevice.open(0);
                } catch (CudaException e) {
                    throw new IllegalArgumentException("backend 'cuda': " + e.getMessage(), e);
                }
            default:
                throw new IllegalArgumentException("unknown backend '" + name + "'; expected host or cuda");
        }
    }
}
