package dev.routingreplay.core.host;

import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.device.RoutingDevice;
import dev.routingreplay.core.device.StagingRing;
import dev.routingreplay.core.memory.DeviceBuffer;
import dev.routingreplay.core.memory.NativeMemory;
import java.nio.ByteBuffer;

/**
 * The embedded default device: "device" memory is off-heap memory, the compute stream is the calling thread, and
 * each ring's copy stream is one ordered thread. Runs everywhere, needs no GPU, and keeps the GPU's hazards
 * (buffers overwritten by the next step, memory freed under a copy) visible to tests.
 */
public final class HostDevice implements RoutingDevice {
    private final NativeMemory memory = new NativeMemory();

    @Override
    public String name() {
        return "host";
    }

    @Override
    public StagingRing openRing(RingSpec spec) {
        return new HostStagingRing(spec, memory);
    }

    @Override
    public HostDeviceBuffer allocate(long bytes) {
        if (bytes < 0 || bytes > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("host device buffers hold 0 to 2 GiB, asked for " + bytes + " bytes");
        }
        return new HostDeviceBuffer(memory, (int) bytes);
    }

    @Override
    public void write(DeviceBuffer dst, long dstOffset, ByteBuffer src) {
        ByteBuffer to = cast(dst).memory();
        int n = src.remaining();
        to.put(Math.toIntExact(dstOffset), src, src.position(), n);
        src.position(src.position() + n);
    }

    @Override
    public void read(DeviceBuffer src, long srcOffset, ByteBuffer dst) {
        ByteBuffer from = cast(src).memory();
        int n = dst.remaining();
        dst.put(dst.position(), from, Math.toIntExact(srcOffset), n);
        dst.position(dst.position() + n);
    }

    /** Off-heap bytes held by this device's buffers and rings that are not yet freed. */
    public long liveBytes() {
        return memory.liveBytes();
    }

    /** Off-heap buffers held by this device's buffers and rings that are not yet freed. */
    public long liveBuffers() {
        return memory.liveBuffers();
    }

    @Override
    public void close() {
        // nothing of its own to free: buffers and rings free themselves
    }

    private static HostDeviceBuffer cast(DeviceBuffer buffer) {
        if (buffer instanceof HostDeviceBuffer h) {
            return h;
        }
        throw new IllegalArgumentException("buffer " + buffer.getClass().getSimpleName() + " does not belong to the host device");
    }
}
