package dev.routingreplay.core.host;

import dev.routingreplay.core.device.InterprocessDevice;
import dev.routingreplay.core.device.InterprocessEvent;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.device.StagingRing;
import dev.routingreplay.core.device.UploadStaging;
import dev.routingreplay.core.memory.DeviceBuffer;
import dev.routingreplay.core.memory.NativeMemory;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.StandardCharsets;
import java.nio.file.InvalidPathException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * The embedded default device: "device" memory is off-heap memory, the compute stream is the calling thread, and
 * each ring's copy stream is one ordered thread. Runs everywhere, needs no GPU, and keeps the GPU's hazards
 * (buffers overwritten by the next step, memory freed under a copy) visible to tests.
 *
 * <p>As an {@link InterprocessDevice} it reads memory another process exported as a file both processes map (the
 * engine bridge's host backend): {@link #openExportedBuffer} maps a region of the file read-only. Its events are
 * no-ops with an empty handle, since the host pack reads the engine's buffer synchronously, inside the call that
 * enqueues it, and the bridge's messages order the two processes.
 */
public final class HostDevice implements InterprocessDevice {
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

    /**
     * Maps {@code [offset, offset + bytes)} of the file whose UTF-8 path is {@code handle}, read-only, as a buffer of
     * this device (so this device's rings pack from it). Writes of the exporting process to the file show through.
     * Closing the buffer drops the mapping; the file is never changed or deleted. Mapped bytes are not counted in
     * {@link #liveBytes()}.
     *
     * @throws IllegalArgumentException naming the path and the range when the handle is not a UTF-8 path, the file is
     *     missing or unreadable, the range is negative, larger than 2 GiB, or reaches past the end of the file
     */
    @Override
    public HostDeviceBuffer openExportedBuffer(byte[] handle, long offset, long bytes) {
        String path = pathOf(handle);
        String range = "[" + offset + ", " + (offset + bytes) + ")";
        if (offset < 0 || bytes < 0 || bytes > Integer.MAX_VALUE - 8) {
            throw new IllegalArgumentException("exported file " + path + ": range " + range + " (offset " + offset + ", " + bytes
                    + " bytes) is not a range of 0 to 2 GiB at a non-negative offset");
        }
        try (FileChannel file = FileChannel.open(Path.of(path), StandardOpenOption.READ)) {
            long size = file.size();
            if (offset + bytes > size) {
                throw new IllegalArgumentException("exported file " + path + " holds " + size + " bytes, too short for range " + range);
            }
            ByteBuffer mapped = file.map(FileChannel.MapMode.READ_ONLY, offset, bytes).order(ByteOrder.nativeOrder());
            return new HostDeviceBuffer(memory, mapped);
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException("exported file " + path + " does not exist (range " + range + ")", e);
        } catch (IOException | InvalidPathException | UnsupportedOperationException e) {
            throw new IllegalArgumentException("exported file " + path + " cannot be mapped (range " + range + "): " + e, e);
        }
    }

    private static String pathOf(byte[] handle) {
        if (handle == null || handle.length == 0) {
            throw new IllegalArgumentException("exported memory handle is empty; the host backend expects the UTF-8 path of a file");
        }
        try {
            return StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(handle)).toString();
        } catch (CharacterCodingException e) {
            throw new IllegalArgumentException("exported memory handle of " + handle.length + " bytes is not a UTF-8 path", e);
        }
    }

    /**
     * Returns a no-op event: host work is synchronous.
     *
     * @throws IllegalArgumentException when {@code handle} is not empty (a CUDA handle sent to the host backend)
     */
    @Override
    public InterprocessEvent openExportedEvent(byte[] handle) {
        if (handle != null && handle.length != 0) {
            throw new IllegalArgumentException("exported event handle of " + handle.length + " bytes: the host backend's event handles are empty");
        }
        return HostInterprocessEvent.INSTANCE;
    }

    /** Returns a no-op event whose handle is empty: host work is synchronous. */
    @Override
    public InterprocessEvent createExportedEvent() {
        return HostInterprocessEvent.INSTANCE;
    }

    /** Off-heap staging copied at once (host work is synchronous) into a buffer this device allocated. */
    @Override
    public UploadStaging openUploadStaging(int bytes) {
        if (bytes < 0) {
            throw new IllegalArgumentException("upload staging of " + bytes + " bytes");
        }
        return new HostUploadStaging(memory, bytes);
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
