package dev.routingreplay.examples;

import dev.routingreplay.core.device.RoutingDevice;
import dev.routingreplay.core.host.HostDevice;

/** Opens a device backend by name. */
final class Backends {
    private Backends() {
    }

    /**
     * {@code host}: the embedded host backend. {@code cuda}: the JCuda backend, when it is on the class path.
     *
     * @throws IllegalArgumentException naming the backend when it is unknown or unavailable
     */
    static RoutingDevice open(String name) {
        switch (name) {
            case "host":
                return new HostDevice();
            case "cuda":
                try {
                    Class<?> type = Class.forName("dev.routingreplay.cuda.CudaDevice");
                    return (RoutingDevice) type.getMethod("open", int.class).invoke(null, 0);
                } catch (ClassNotFoundException e) {
                    throw new IllegalArgumentException("backend 'cuda' is not on the class path; use --backend host", e);
                } catch (ReflectiveOperationException e) {
                    Throwable cause = e.getCause() != null ? e.getCause() : e;
                    throw new IllegalArgumentException("backend 'cuda': " + cause.getMessage(), cause);
                }
            default:
                throw new IllegalArgumentException("unknown backend '" + name + "'; expected host or cuda");
        }
    }
}
