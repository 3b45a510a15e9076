package dev.routingreplay.cuda;

import dev.routingreplay.core.device.DeviceBuffer;
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

    CudaBuffer(CudaDevice device, long bytes) {
        this.device = device;
        this.bytes = bytes;
        this.pointer = new CUdeviceptr();
        this.owned = true;
        device.bind();
        Cuda.check(JCudaDriver.cuMemAlloc(pointer, Math.max(1, bytes)), "cuMemAlloc(" + bytes + ")");
    }

    private CudaBuffer(CudaDevice device, CUdeviceptr pointer, long bytes) {
        this.device = device;
        this.bytes = bytes;
        this.pointer = pointer;
        this.owned = false;
    }

    /** A buffer at a device address nobody allocated: for the self-test that provokes a real CUDA error. */
    static CudaBuffer unallocated(CudaDevice device, long address, long bytes) {
        return new CudaBuffer(device, new CUdeviceptr().withByteOffset(address), bytes);
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
        if (closed.compareAndSet(false, true) && owned) {
            device.bind();
            Cuda.check(JCudaDriver.cuMemFree(pointer), "cuMemFree");
        }
    }
}
