package dev.routingreplay.cuda;

import dev.routingreplay.core.device.UploadStaging;
import dev.routingreplay.core.memory.DeviceBuffer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import jcuda.Pointer;
import jcuda.driver.CUevent;
import jcuda.driver.CUevent_flags;
import jcuda.driver.JCudaDriver;

/**
 * The CUDA backend's upload staging: pinned host memory ({@code cuMemHostAlloc}) copied to device memory by
 * {@code cuMemcpyHtoDAsync} on the compute stream (the copy engine; no kernel), and an event recorded after each copy
 * that {@link #awaitCopied()} waits on before the memory may be written again.
 */
final class CudaUploadStaging implements UploadStaging {
    private final CudaDevice device;
    private final int bytes;
    private final Pointer host = new Pointer();
    private final CUevent copied = new CUevent();
    private final ByteBuffer buffer;
    private boolean closed;

    CudaUploadStaging(CudaDevice device, int bytes) {
        if (bytes <= 0) {
            throw new IllegalArgumentException("upload staging of " + bytes + " bytes; ask for at least 1");
        }
        this.device = device;
        this.bytes = bytes;
        device.bind();
        Cuda.check(JCudaDriver.cuMemHostAlloc(host, bytes, 0), "cuMemHostAlloc(" + bytes + ")");
        try {
            Cuda.check(JCudaDriver.cuEventCreate(copied, CUevent_flags.CU_EVENT_DISABLE_TIMING), "cuEventCreate(uploaded)");
        } catch (RuntimeException e) {
            JCudaDriver.cuMemFreeHost(host);
            throw e;
        }
        this.buffer = host.getByteBuffer(0, bytes).order(ByteOrder.nativeOrder());
    }

    @Override
    public ByteBuffer buffer() {
        if (closed) {
            throw new IllegalStateException("upload staging is closed");
        }
        return buffer;
    }

    @Override
    public void enqueueCopyTo(DeviceBuffer dst, int n) {
        CudaBuffer to = CudaDevice.cast(dst);
        if (closed) {
            throw new IllegalStateException("upload staging is closed");
        }
        if (n < 0 || n > bytes || n > to.byteSize()) {
            throw new IllegalArgumentException("upload of " + n + " bytes: the staging holds " + bytes + " and the target " + to.byteSize());
        }
        device.bind();
        if (n > 0) {
            Cuda.check(JCudaDriver.cuMemcpyHtoDAsync(to.pointer(), host, n, device.computeStream()), "cuMemcpyHtoDAsync(upload)");
        }
        Cuda.check(JCudaDriver.cuEventRecord(copied, device.computeStream()), "cuEventRecord(uploaded)");
    }

    @Override
    public void awaitCopied() {
        device.bind();
        Cuda.check(JCudaDriver.cuEventSynchronize(copied), "cuEventSynchronize(uploaded)");
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        device.bind();
        // after a CUDA error this returns it again; it was reported where it happened
        JCudaDriver.cuEventSynchronize(copied);
        JCudaDriver.cuEventDestroy(copied);
        JCudaDriver.cuMemFreeHost(host);
    }
}
