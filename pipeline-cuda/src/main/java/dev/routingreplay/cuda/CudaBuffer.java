package dev.routingreplay.cuda;

import dev.routingreplay.core.memory.DeviceBuffer;
import java.util.concurrent.atomic.AtomicBoolean;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.JCudaDriver;

/** Device memory from {@code cuMemAlloc}, owned by a {@link CudaDevice}. */
public final class CudaBuffer implements DeviceBuffer {
    private final CudaDevice device;
    private final CUdeviceptr pointer;
    private final long bytes;
    private final AtomicBoolean closed = new AtomicBoolean();
    private final boolean owned;
    private final Runnable release;

    CudaBuffer(CudaDevice device, long bytes) {
        this.device = device;
        this.bytes = bytes;
        this.pointer = new CUdeviceptr();
        this.owned = true;
        this.release = null;
        device.bind();
        Cuda.check(JCudaDriver.cuMemAlloc(pointer, Math.max(1, bytes)), "cuMemAlloc(" + bytes + ")");
    }

    CudaBuffer(CudaDevice device, CUdeviceptr pointer, long bytes, Runnable release) {
        this.device = device;
        this.bytes = bytes;
        this.pointer = pointer;
        this.owned = false;
        this.release = release;
    }

    /**
     * Device memory that someone else owns, in {@code device}'s context: an engine's routing or slot-mapping tensor at
     * its {@code data_ptr()}. The pipeline reads it; closing the wrapper never frees it.
     *
     * @throws IllegalArgumentException for address 0 or a negative size
     */
    public static CudaBuffer wrap(CudaDevice device, long address, long bytes) {
        if (address == 0 || bytes < 0) {
            throw new IllegalArgumentException("cannot wrap device address " + address + " of " + bytes + " bytes");
        }
        return new CudaBuffer(device, new CUdeviceptr().withByteOffset(address), bytes, null);
    }

    /** The raw device address (to hand to another library). */
    public long address() {
        return CudaHandles.address(pointer());
    }

    /** The device pointer (for kernels and copies). */
    public CUdeviceptr pointer() {
        if (closed.get()) {
            throw new IllegalStateException("CUDA buffer of " + bytes + " bytes is closed");
        }
        return pointer;
    }

    CudaDevice device() {
        return device;
    }

    @Override
    public long byteSize() {
        return bytes;
    }

    @Override
    public void close() {
        if (closed.compareAndSet(false, true)) {
            if (owned) {
                device.bind();
                Cuda.check(JCudaDriver.cuMemFree(pointer), "cuMemFree");
            } else if (release != null) {
                release.run();
            }
        }
    }
}
