package dev.routingreplay.cuda;

import dev.routingreplay.core.device.InterprocessEvent;
import java.util.concurrent.atomic.AtomicBoolean;
import jcuda.driver.CUevent;
import jcuda.driver.CUevent_flags;
import jcuda.driver.CUipcEventHandle;
import jcuda.driver.JCudaDriver;

/**
 * A CUDA event shared with another process: created here with {@code CU_EVENT_INTERPROCESS} (timing disabled, as
 * IPC requires) or opened from another process's {@code cudaIpcEventHandle_t}. Records and waits go to the device's
 * compute stream and never block the caller.
 */
final class CudaInterprocessEvent implements InterprocessEvent {
    private final CudaDevice device;
    private final CUevent event;
    private final byte[] handle;
    private final AtomicBoolean closed = new AtomicBoolean();

    private CudaInterprocessEvent(CudaDevice device, CUevent event, byte[] handle) {
        this.device = device;
        this.event = event;
        this.handle = handle;
    }

    static CudaInterprocessEvent create(CudaDevice device) {
        device.bind();
        CUevent event = new CUevent();
        Cuda.check(JCudaDriver.cuEventCreate(event, CUevent_flags.CU_EVENT_INTERPROCESS | CUevent_flags.CU_EVENT_DISABLE_TIMING),
                "cuEventCreate(INTERPROCESS | DISABLE_TIMING)");
        CUipcEventHandle h = new CUipcEventHandle();
        int r = JCudaDriver.cuIpcGetEventHandle(h, event);
        if (r != 0) {
            JCudaDriver.cuEventDestroy(event);
            Cuda.check(r, "cuIpcGetEventHandle");
        }
        return new CudaInterprocessEvent(device, event, CudaIpc.bytes(h));
    }

    static CudaInterprocessEvent open(CudaDevice device, byte[] handle) {
        CUipcEventHandle h = CudaIpc.eventHandle(handle);
        device.bind();
        CUevent event = new CUevent();
        Cuda.check(JCudaDriver.cuIpcOpenEventHandle(event, h), "cuIpcOpenEventHandle");
        return new CudaInterprocessEvent(device, event, handle.clone());
    }

    @Override
    public byte[] handle() {
        return handle.clone();
    }

    @Override
    public void recordOnCompute() {
        live();
        device.bind();
        Cuda.check(JCudaDriver.cuEventRecord(event, device.computeStream()), "cuEventRecord(interprocess event)");
    }

    @Override
    public void waitOnCompute() {
        live();
        device.bind();
        Cuda.check(JCudaDriver.cuStreamWaitEvent(device.computeStream(), event, 0), "cuStreamWaitEvent(interprocess event)");
    }

    private void live() {
        if (closed.get()) {
            throw new IllegalStateException("interprocess event is closed");
        }
    }

    @Override
    public void close() {
        if (closed.compareAndSet(false, true)) {
            device.bind();
            JCudaDriver.cuEventDestroy(event);
        }
    }
}
