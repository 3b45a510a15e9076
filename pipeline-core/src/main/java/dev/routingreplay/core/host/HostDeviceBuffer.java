package dev.routingreplay.core.host;

import dev.routingreplay.core.memory.DeviceBuffer;
import dev.routingreplay.core.memory.NativeMemory;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * "Device" memory of the {@link HostDevice}: an off-heap buffer in native byte order, either allocated by the device
 * (freed by {@link #close}) or a read-only mapping of memory another process exported (a file region, see
 * {@link HostDevice#openExportedBuffer}; {@link #close} drops the mapping and frees nothing of the exporter's).
 */
public final class HostDeviceBuffer implements DeviceBuffer {
    private final NativeMemory memory;
    private final long size;
    private final boolean exported;
    private volatile ByteBuffer bytes;
    private final AtomicBoolean closed = new AtomicBoolean();

    HostDeviceBuffer(NativeMemory memory, int size) {
        this.memory = memory;
        this.size = size;
        this.exported = false;
        this.bytes = memory.allocate(size);
    }

    /** Wraps {@code mapped} (native order), memory another process exported; the device's {@code memory} does not own it. */
    HostDeviceBuffer(NativeMemory memory, ByteBuffer mapped) {
        this.memory = memory;
        this.size = mapped.capacity();
        this.exported = true;
        this.bytes = mapped;
    }

    /**
     * The memory itself (absolute access, native order). A simulated engine writes its routing here, as a forward
     * pass would; the pipeline reads it only inside {@code enqueueCapture}. Read-only for an exported buffer.
     *
     * @throws IllegalStateException when the buffer is closed
     */
    public ByteBuffer memory() {
        ByteBuffer b = bytes;
        if (b == null) {
            throw new IllegalStateException("host device buffer of " + size + " bytes is closed");
        }
        return b;
    }

    /** Whether this buffer was allocated or opened by the device whose memory is {@code pool}. */
    boolean belongsTo(NativeMemory pool) {
        return memory == pool;
    }

    /** Whether this buffer maps memory another process exported (closing it frees nothing). */
    public boolean isExported() {
        return exported;
    }

    @Override
    public long byteSize() {
        return size;
    }

    /**
     * Frees an allocated buffer; drops an exported one's mapping (the mapping goes with the garbage collector, so a
     * late reader never touches unmapped memory; the exporter's file and memory stay). Idempotent.
     */
    @Override
    public void close() {
        if (closed.compareAndSet(false, true)) {
            ByteBuffer b = bytes;
            bytes = null;
            if (!exported) {
                memory.free(b);
            }
        }
    }
}
