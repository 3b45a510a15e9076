package dev.routingreplay.core.host;

import dev.routingreplay.core.device.InterprocessEvent;

/**
 * The host backend's shared event: every method is a no-op and the handle is empty, because the host pack reads the
 * engine's buffer synchronously inside the call that enqueues it. Stateless, so one instance serves everyone.
 */
final class HostInterprocessEvent implements InterprocessEvent {
    static final HostInterprocessEvent INSTANCE = new HostInterprocessEvent();
    private static final byte[] EMPTY = new byte[0];

    private HostInterprocessEvent() {
    }

    @Override
    public byte[] handle() {
        return EMPTY.clone();
    }

    @Override
    public void recordOnCompute() {
        // the host pack already ran when this is called
    }

    @Override
    public void waitOnCompute() {
        // the exporter wrote the buffer before it sent the message that leads here
    }

    @Override
    public void close() {
        // nothing held
    }
}
