package dev.routingreplay.core.host;

import dev.routingreplay.core.device.UploadStaging;
import dev.routingreplay.core.memory.DeviceBuffer;
import dev.routingreplay.core.memory.NativeMemory;
import java.nio.ByteBuffer;

/** The host backend's upload staging: off-heap memory, copied at once into an allocated buffer of the same device. */
final class HostUploadStaging implements UploadStaging {
    private final NativeMemory memory;
    private ByteBuffer staging;

    HostUploadStaging(NativeMemory memory, int bytes) {
        this.memory = memory;
        this.staging = memory.allocate(bytes);
    }

    @Override
    public ByteBuffer buffer() {
        if (staging == null) {
            throw new IllegalStateException("upload staging is closed");
        }
        return staging;
    }

    @Override
    public void enqueueCopyTo(DeviceBuffer dst, int bytes) {
        if (!(dst instanceof HostDeviceBuffer to) || !to.belongsTo(memory) || to.isExported()) {
            throw new IllegalArgumentException("upload target must be a buffer this host device allocated, was "
                    + (dst instanceof HostDeviceBuffer h && h.isExported() ? "an exported (read-only) mapping" : dst.getClass().getSimpleName()));
        }
        if (bytes < 0 || bytes > buffer().capacity() || bytes > to.byteSize()) {
            throw new IllegalArgumentException("upload of " + bytes + " bytes: the staging holds " + buffer().capacity() + " and the target "
                    + to.byteSize());
        }
        to.memory().put(0, staging, 0, bytes);
    }

    @Override
    public void awaitCopied() {
        // copies ran inside enqueueCopyTo
    }

    @Override
    public void close() {
        if (staging != null) {
            memory.free(staging);
            staging = null;
        }
    }
}
