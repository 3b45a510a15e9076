package dev.routingreplay.bridge;

import dev.routingreplay.core.device.InterprocessDevice;
import dev.routingreplay.core.host.HostDevice;

/** The {@code backend} byte of HELLO and WELCOME: where the engine's buffers live. */
public enum Backend {
    /** Mapped files, no GPU ({@link HostDevice}). */
    HOST(0, "host"),
    /** CUDA IPC memory and events. */
    CUDA(1, "cuda");

    private final int code;
    private final String label;

    Backend(int code, String label) {
        this.code = code;
        this.label = label;
    }

    /** The byte on the wire. */
    public int code() {
        return code;
    }

    /** {@code host} or {@code cuda}. */
    public String label() {
        return label;
    }

    /** The backend of {@code device}: {@link #HOST} for a {@link HostDevice}, else {@link #CUDA}. */
    public static Backend of(InterprocessDevice device) {
        return device instanceof HostDevice ? HOST : CUDA;
    }

    /** The backend whose code is {@code code} (0 or 1). */
    static Backend of(int code) {
        return code == 0 ? HOST : CUDA;
    }
}
