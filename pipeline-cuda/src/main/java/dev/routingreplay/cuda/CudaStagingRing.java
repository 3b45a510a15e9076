package dev.routingreplay.cuda;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CaptureListener;
import dev.routingreplay.core.device.RingSlotLayout;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.device.StagingRing;
import dev.routingreplay.core.event.CaptureStep;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import jcuda.Pointer;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.CUevent;
import jcuda.driver.CUevent_flags;
import jcuda.driver.CUstream;
import jcuda.driver.CUstream_flags;
import jcuda.driver.JCudaDriver;

/**
 * The CUDA staging ring. Per slot: device staging memory and pinned host memory ({@code cuMemHostAlloc}) laid out by
 * {@link RingSlotLayout}, a "packed" event and a "copied" event (timing disabled).
 *
 * <p>A capture: on the compute stream, zero the status header and slot words and run {@code r3_pack} (engine ids, int32
 * or int64, to the compact dtype, with validation; a row with an out-of-range id is marked dropped in its slot word; this is also the device-to-device copy that frees the engine's buffer for the
 * next forward), record "packed"; the copy stream waits for "packed" and copies the used header+slots and rows to the
 * pinned host slot, records "copied"; the completion notifier reports it. The compute stream never waits for the copy.
 * Enqueueing allocates nothing per step while the engine keeps its buffers.
 */
final class CudaStagingRing implements StagingRing {
    private static final int PACK_THREADS = 256;
    private static final int MAX_PACK_BLOCKS = 132 * 8;

    private final CudaDevice device;
    private final RingSpec spec;
    private final RingSlotLayout layout;
    private final CUstream copyStream = new CUstream();
    private final CUdeviceptr[] staging;
    private final CUdeviceptr[] stagingRows;
    private final Pointer[] host;
    private final Pointer[] hostRows;
    private final ByteBuffer[] hostBuffers;
    private final CUevent[] packed;
    private final CUevent[] copied;
    private final SlotParams[] params;
    private final CompletionNotifier notifier;
    private final CUevent copyStartTimed = new CUevent();
    private final CUevent copyEndTimed = new CUevent();
    private boolean copyStreamCreated;
    private boolean timeCopies;
    private boolean closed;

    /** The pack kernel's arguments for one ring slot, reused every step. */
    private static final class SlotParams {
        final int[] idBytes = new int[1];
        final int[] slotBytes = new int[1];
        final int[] tokens = new int[1];
        final int[] idsPerRow = new int[1];
        final int[] numExperts = new int[1];
        final int[] slotCapacity = new int[1];
        final int[] dtypeBytes = new int[1];
        final int[] rowsOffset = new int[1];
        CudaBuffer routing;
        CudaBuffer slots;
        Pointer kernelParams;

        Pointer forBuffers(CudaBuffer r, CudaBuffer s, CUdeviceptr stagingPtr) {
            if (r != routing || s != slots || kernelParams == null) {
                routing = r;
                slots = s;
                kernelParams = Pointer.to(Pointer.to(r.pointer()), Pointer.to(idBytes), Pointer.to(s.pointer()), Pointer.to(slotBytes),
                        Pointer.to(tokens), Pointer.to(idsPerRow), Pointer.to(numExperts), Pointer.to(slotCapacity),
                        Pointer.to(dtypeBytes), Pointer.to(stagingPtr), Pointer.to(rowsOffset));
            }
            return kernelParams;
        }
    }

    CudaStagingRing(CudaDevice device, RingSpec spec, CompletionStrategy completion) {
        this.device = device;
        this.spec = spec;
        this.layout = spec.layout();
        int depth = spec.depth();
        this.staging = new CUdeviceptr[depth];
        this.stagingRows = new CUdeviceptr[depth];
        this.host = new Pointer[depth];
        this.hostRows = new Pointer[depth];
        this.hostBuffers = new ByteBuffer[depth];
        this.packed = new CUevent[depth];
        this.copied = new CUevent[depth];
        this.params = new SlotParams[depth];
        device.bind();
        try {
            Cuda.check(JCudaDriver.cuStreamCreate(copyStream, CUstream_flags.CU_STREAM_NON_BLOCKING), "cuStreamCreate(copy)");
            copyStreamCreated = true;
            int eventFlags = completion.copiedEventFlags();
            RoutingShape shape = spec.shape();
            // each handle enters its array only once created, so a failure part way frees exactly what exists
            for (int i = 0; i < depth; i++) {
                CUdeviceptr d = new CUdeviceptr();
                Cuda.check(JCudaDriver.cuMemAlloc(d, layout.totalBytes()), "cuMemAlloc(staging " + layout.totalBytes() + ")");
                staging[i] = d;
                stagingRows[i] = d.withByteOffset(layout.rowsOffset());
                Pointer h = new Pointer();
                Cuda.check(JCudaDriver.cuMemHostAlloc(h, layout.totalBytes(), 0), "cuMemHostAlloc(" + layout.totalBytes() + ")");
                host[i] = h;
                hostRows[i] = h.withByteOffset(layout.rowsOffset());
                hostBuffers[i] = h.getByteBuffer(0, layout.totalBytes()).order(ByteOrder.nativeOrder());
                CUevent pe = new CUevent();
                Cuda.check(JCudaDriver.cuEventCreate(pe, CUevent_flags.CU_EVENT_DISABLE_TIMING), "cuEventCreate(packed)");
                packed[i] = pe;
                CUevent ce = new CUevent();
                Cuda.check(JCudaDriver.cuEventCreate(ce, eventFlags), "cuEventCreate(copied)");
                copied[i] = ce;
                SlotParams p = new SlotParams();
                p.idsPerRow[0] = shape.idsPerRow();
                p.numExperts[0] = shape.numExperts();
                p.slotCapacity[0] = spec.slotCapacity();
                p.dtypeBytes[0] = shape.dtype().bytes();
                p.rowsOffset[0] = layout.rowsOffset();
                params[i] = p;
            }
            this.notifier = CompletionNotifier.create(completion, device, copyStream, copied);
        } catch (RuntimeException | Error e) {
            freeHandles();
            throw e;
        }
    }

    /** Frees every handle that was created (all of them after {@link #close}'s synchronize, or those a failed constructor made). */
    private void freeHandles() {
        for (int i = 0; i < staging.length; i++) {
            if (packed[i] != null) {
                JCudaDriver.cuEventDestroy(packed[i]);
            }
            if (copied[i] != null) {
                JCudaDriver.cuEventDestroy(copied[i]);
            }
            if (staging[i] != null) {
                JCudaDriver.cuMemFree(staging[i]);
            }
            if (host[i] != null) {
                JCudaDriver.cuMemFreeHost(host[i]);
            }
        }
        if (copyStreamCreated) {
            JCudaDriver.cuStreamDestroy(copyStream);
        }
        if (timeCopies) {
            JCudaDriver.cuEventDestroy(copyStartTimed);
            JCudaDriver.cuEventDestroy(copyEndTimed);
        }
    }

    @Override
    public RingSpec spec() {
        return spec;
    }

    @Override
    public synchronized void enqueueCapture(int index, CaptureStep step, CaptureListener listener) {
        if (closed) {
            throw new IllegalStateException("staging ring is closed; cannot capture " + step.describe());
        }
        CudaBuffer routing = CudaDevice.cast(step.routing().buffer());
        CudaBuffer slots = CudaDevice.cast(step.slotMapping().buffer());
        int tokens = step.tokenCount();
        CUstream compute = device.computeStream();
        device.bind();
        SlotParams p = params[index];
        p.idBytes[0] = step.routing().elementType() == ElementType.INT32 ? 4 : 8;
        p.slotBytes[0] = step.slotMapping().elementType() == ElementType.INT32 ? 4 : 8;
        p.tokens[0] = tokens;
        Pointer kernelParams = p.forBuffers(routing, slots, staging[index]);
        // the status header and the slot words: the pack ORs each token's slot word together (RingSlotLayout.DROPPED_ROW)
        Cuda.check(JCudaDriver.cuMemsetD8Async(staging[index], (byte) 0, layout.headerBytes(tokens), compute),
                "cuMemsetD8Async(status and slots)");
        if (tokens > 0) {
            long total = (long) tokens * spec.shape().idsPerRow();
            int blocks = (int) Math.min((total + PACK_THREADS - 1) / PACK_THREADS, MAX_PACK_BLOCKS);
            Cuda.check(JCudaDriver.cuLaunchKernel(device.kernels().pack, blocks, 1, 1, PACK_THREADS, 1, 1, 0, compute, kernelParams, null),
                    "cuLaunchKernel(r3_pack)");
        }
        Cuda.check(JCudaDriver.cuEventRecord(packed[index], compute), "cuEventRecord(packed)");
        Cuda.check(JCudaDriver.cuStreamWaitEvent(copyStream, packed[index], 0), "cuStreamWaitEvent(copy, packed)");
        if (timeCopies) {
            Cuda.check(JCudaDriver.cuEventRecord(copyStartTimed, copyStream), "cuEventRecord(copy start)");
        }
        Cuda.check(JCudaDriver.cuMemcpyDtoHAsync(host[index], staging[index], layout.headerBytes(tokens), copyStream),
                "cuMemcpyDtoHAsync(header)");
        if (tokens > 0) {
            Cuda.check(JCudaDriver.cuMemcpyDtoHAsync(hostRows[index], stagingRows[index], layout.rowBytesFor(tokens), copyStream),
                    "cuMemcpyDtoHAsync(rows)");
        }
        if (timeCopies) {
            Cuda.check(JCudaDriver.cuEventRecord(copyEndTimed, copyStream), "cuEventRecord(copy end)");
        }
        Cuda.check(JCudaDriver.cuEventRecord(copied[index], copyStream), "cuEventRecord(copied)");
        notifier.register(index, listener);
    }

    @Override
    public synchronized ByteBuffer hostSlot(int index) {
        if (closed) {
            throw new IllegalStateException("staging ring is closed; its pinned host slot " + index + " is freed");
        }
        return hostBuffers[index];
    }

    /** Fills slot {@code index}'s staging and host memory with {@code value} (tests poison them to catch unwritten bytes). */
    void poison(int index, byte value) {
        device.bind();
        Cuda.check(JCudaDriver.cuMemsetD8Async(staging[index], value, layout.totalBytes(), copyStream), "cuMemsetD8Async(poison)");
        Cuda.check(JCudaDriver.cuStreamSynchronize(copyStream), "cuStreamSynchronize(copy)");
        ByteBuffer b = hostBuffers[index];
        for (int i = 0; i < b.capacity(); i++) {
            b.put(i, value);
        }
    }

    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        device.bind();
        // after a CUDA error this returns it again; the error was already reported through the listeners
        JCudaDriver.cuStreamSynchronize(copyStream);
        notifier.close();
        freeHandles();
    }

    /** Benchmarks only: from now on, time the device-to-host copies of each capture with timing events. */
    synchronized void timeCopies() {
        if (!timeCopies) {
            device.bind();
            Cuda.check(JCudaDriver.cuEventCreate(copyStartTimed, CUevent_flags.CU_EVENT_DEFAULT), "cuEventCreate(copy start)");
            Cuda.check(JCudaDriver.cuEventCreate(copyEndTimed, CUevent_flags.CU_EVENT_DEFAULT), "cuEventCreate(copy end)");
            timeCopies = true;
        }
    }

    /** Benchmarks only: milliseconds the last capture's device-to-host copies took on the copy stream. */
    float lastCopyMillis() {
        device.bind();
        Cuda.check(JCudaDriver.cuEventSynchronize(copyEndTimed), "cuEventSynchronize(copy end)");
        float[] ms = new float[1];
        Cuda.check(JCudaDriver.cuEventElapsedTime(ms, copyStartTimed, copyEndTimed), "cuEventElapsedTime");
        return ms[0];
    }

    /** Slot {@code index}'s copy-complete event (the benchmark's latency observer polls it). */
    CUevent copiedEvent(int index) {
        return copied[index];
    }
}
