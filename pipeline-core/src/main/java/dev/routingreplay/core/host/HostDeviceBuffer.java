package dev.routingreplay.core.host;

import dev.routingreplay.core.memory.DeviceBuffer;
import dev.routingreplay.core.memory.NativeMemory;
import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicBoolean;

/** "Device" memory of the {@link HostDevice}: an off-heap buffer in native byte order. */
public final class HostDeviceBuffer implements DeviceBuffer {
    private final NativeMemory memory;
    private final ByteBuffer bytes;
    private final AtomicBoolean closed = new AtomicBoolean();

    HostDeviceBuffer(NativeMemory memory, int size) {
        this.memory = memory;
        this.bytes = memory.allocate(size);
    }

    /**
     * The memory itself (absolute access, native order). A simulated engine writes its routing here, as a forward
     * pass would; the pipeline reads it only inside {@code enqueueCapture}.
     */
    public ByteBuffer memory() {
        if (closed.get()) {
            throw new IllegalStateException("host device buffer of " + bytes.capacity() + " bytes is closed");
        }
        return bytes;
    }

    /** Whether this buffer was allocated by the device whose memory is {@code pool}. */
    boolean belongsTo(NativeMemory pool) {
        return memory == pool;
    }

    @Override
    public long byteSize() {
        return bytes.capacity();
    }

    @Override
    public void close() {
        if (closed.compareAndSet(false, true)) {
            memory.free(bytes);
        }
    }
}
