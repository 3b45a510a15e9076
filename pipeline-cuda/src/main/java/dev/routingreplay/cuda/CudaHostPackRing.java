package dev.routingreplay.cuda;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.device.CaptureListener;
import dev.routingreplay.core.device.RingSlotLayout;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.device.StagingRing;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.host.HostPack;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import jcuda.Pointer;
import jcuda.driver.CUevent;
import jcuda.driver.CUstream;
import jcuda.driver.JCudaDriver;

/**
 * The CUDA staging ring of {@link PackSite#HOST}: per slot, pinned host memory for a step's raw ids and slot mapping
 * ({@code cuMemHostAlloc}, sized for int64 ids and slots), a host slot laid out by {@link RingSlotLayout}, and a
 * "copied" event (timing disabled).
 *
 * <p>A capture: on the compute stream, copy the used part of the engine's ids and slot mapping to the slot's pinned
 * memory and record "copied" (no kernel: the copy engine does it, so the engine's buffers are free once "copied" has
 * completed, and anything recorded on the compute stream after this call orders after the copies); the completion
 * notifier's thread then packs them into the host slot with {@link HostPack} and reports the capture. Enqueueing
 * allocates nothing per step.
 */
final class CudaHostPackRing implements StagingRing {
    private final CudaDevice device;
    private final RingSpec spec;
    private final RingSlotLayout layout;
    private final Pointer[] raw;
    private final Pointer[] rawSlots;
    private final ByteBuffer[] hostBuffers;
    private final CUevent[] copied;
    private final PackTask[] tasks;
    private final CompletionNotifier notifier;
    private final long rawIdBytes;
    private boolean closed;

    /** One slot's pack on the completion thread, armed per capture (fields published by the notifier's volatile counter). */
    private final class PackTask implements CaptureListener {
        private final ByteBuffer ids;
        private final ByteBuffer slots;
        private final ByteBuffer host;
        private int tokens;
        private ElementType idType;
        private ElementType slotType;
        private CaptureListener downstream;

        PackTask(ByteBuffer ids, ByteBuffer slots, ByteBuffer host) {
            this.ids = ids;
            this.slots = slots;
            this.host = host;
        }

        @Override
        public void onCaptureComplete(int ringIndex, Throwable error) {
            Throwable failure = error;
            if (failure == null) {
                try {
                    HostPack.pack(ids, idType, slots, slotType, tokens, spec, layout, host);
                } catch (RuntimeException e) {
                    failure = e;
                }
            }
            CaptureListener listener = downstream;
            downstream = null;
            listener.onCaptureComplete(ringIndex, failure);
        }
    }

    CudaHostPackRing(CudaDevice device, RingSpec spec, CompletionStrategy completion) {
        this.device = device;
        this.spec = spec;
        this.layout = spec.layout();
        int depth = spec.depth();
        int maxTokens = spec.maxTokensPerStep();
        this.rawIdBytes = (long) maxTokens * spec.shape().idsPerRow() * Long.BYTES;
        long rawBytes = rawIdBytes + (long) maxTokens * Long.BYTES;
        if (rawBytes > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("a host-pack ring slot of " + rawBytes + " bytes (" + maxTokens + " tokens of "
                    + spec.shape().idsPerRow() + " int64 ids) exceeds 2 GiB; lower maxTokensPerStep");
        }
        this.raw = new Pointer[depth];
        this.rawSlots = new Pointer[depth];
        this.hostBuffers = new ByteBuffer[depth];
        this.copied = new CUevent[depth];
        this.tasks = new PackTask[depth];
        device.bind();
        try {
            int eventFlags = completion.copiedEventFlags();
            // each handle enters its array only once created, so a failure part way frees exactly what exists
            for (int i = 0; i < depth; i++) {
                Pointer h = new Pointer();
                Cuda.check(JCudaDriver.cuMemHostAlloc(h, rawBytes, 0), "cuMemHostAlloc(" + rawBytes + ")");
                raw[i] = h;
                rawSlots[i] = h.withByteOffset(rawIdBytes);
                CUevent ce = new CUevent();
                Cuda.check(JCudaDriver.cuEventCreate(ce, eventFlags), "cuEventCreate(copied)");
                copied[i] = ce;
                ByteBuffer ids = h.getByteBuffer(0, rawIdBytes).order(ByteOrder.nativeOrder());
                ByteBuffer slots = h.getByteBuffer(rawIdBytes, rawBytes - rawIdBytes).order(ByteOrder.nativeOrder());
                hostBuffers[i] = ByteBuffer.allocateDirect(layout.totalBytes()).order(ByteOrder.nativeOrder());
                tasks[i] = new PackTask(ids, slots, hostBuffers[i]);
            }
            this.notifier = CompletionNotifier.create(completion, device, device.computeStream(), copied);
        } catch (RuntimeException | Error e) {
            freeHandles();
            throw e;
        }
    }

    private void freeHandles() {
        for (int i = 0; i < raw.length; i++) {
            if (copied[i] != null) {
                JCudaDriver.cuEventDestroy(copied[i]);
            }
            if (raw[i] != null) {
                JCudaDriver.cuMemFreeHost(raw[i]);
            }
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
        ElementType idType = step.routing().elementType();
        ElementType slotType = step.slotMapping().elementType();
        int tokens = step.tokenCount();
        long idBytes = (long) tokens * spec.shape().idsPerRow() * idType.bytes();
        long slotBytes = (long) tokens * slotType.bytes();
        if (idBytes > routing.byteSize() || slotBytes > slots.byteSize()) {
            throw new IllegalArgumentException(step.describe() + ": " + tokens + " tokens need " + idBytes + " bytes of ids and " + slotBytes
                    + " of slots; the buffers hold " + routing.byteSize() + " and " + slots.byteSize());
        }
        CUstream compute = device.computeStream();
        device.bind();
        if (tokens > 0) {
            Cuda.check(JCudaDriver.cuMemcpyDtoHAsync(raw[index], routing.pointer(), idBytes, compute), "cuMemcpyDtoHAsync(ids)");
            Cuda.check(JCudaDriver.cuMemcpyDtoHAsync(rawSlots[index], slots.pointer(), slotBytes, compute),
                    "cuMemcpyDtoHAsync(slots)");
        }
        Cuda.check(JCudaDriver.cuEventRecord(copied[index], compute), "cuEventRecord(copied)");
        PackTask task = tasks[index];
        task.tokens = tokens;
        task.idType = idType;
        task.slotType = slotType;
        task.downstream = listener;
        notifier.register(index, task);
    }

    @Override
    public synchronized ByteBuffer hostSlot(int index) {
        if (closed) {
            throw new IllegalStateException("staging ring is closed; its host slot " + index + " is freed");
        }
        return hostBuffers[index];
    }

    /** Fills slot {@code index}'s raw and host memory with {@code value} (tests poison them to catch unwritten bytes). */
    void poison(int index, byte value) {
        for (ByteBuffer b : new ByteBuffer[] {tasks[index].ids, tasks[index].slots, hostBuffers[index]}) {
            for (int i = 0; i < b.capacity(); i++) {
                b.put(i, value);
            }
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
        for (CUevent e : copied) {
            JCudaDriver.cuEventSynchronize(e);
        }
        notifier.close();
        freeHandles();
    }
}
