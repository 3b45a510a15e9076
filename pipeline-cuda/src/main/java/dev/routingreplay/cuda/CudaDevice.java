package dev.routingreplay.cuda;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.memory.DeviceBuffer;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.device.InterprocessDevice;
import dev.routingreplay.core.device.InterprocessEvent;
import dev.routingreplay.core.device.StagingRing;
import dev.routingreplay.core.device.UploadStaging;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Objects;
import jcuda.Pointer;
import jcuda.driver.CUcontext;
import jcuda.driver.CUdevice;
import jcuda.driver.CUstream;
import jcuda.driver.CUstream_flags;
import jcuda.driver.JCudaDriver;

/**
 * The CUDA backend (JCuda driver API): the device's primary context, a compute stream (the engine's; here the
 * backend's own, on which the synthetic gate runs), and the kernels loaded from the committed PTX. Each ring gets its
 * own non-blocking copy stream, so the compute stream never waits for a device-to-host copy.
 *
 * <p>Thread-safe to call from any thread: every entry point makes the context current first.
 */
public final class CudaDevice implements InterprocessDevice {
    private final int ordinal;
    private final CUdevice device = new CUdevice();
    private final CUcontext context = new CUcontext();
    private final CUstream computeStream;
    private final boolean ownsComputeStream;
    private final CudaKernels kernels;
    private final CompletionStrategy completion;
    private final PackSite packSite;
    private final String name;
    private final CudaImportedMemory imported = new CudaImportedMemory(this);

    private CudaDevice(int ordinal, CompletionStrategy completion, PackSite packSite, long engineStream) {
        Cuda.init();
        this.ordinal = ordinal;
        this.completion = completion;
        this.packSite = packSite;
        Cuda.check(JCudaDriver.cuDeviceGet(device, ordinal), "cuDeviceGet(" + ordinal + ")");
        Cuda.check(JCudaDriver.cuDevicePrimaryCtxRetain(context, device), "cuDevicePrimaryCtxRetain");
        bind();
        if (engineStream == 0) {
            this.computeStream = new CUstream();
            this.ownsComputeStream = true;
            Cuda.check(JCudaDriver.cuStreamCreate(computeStream, CUstream_flags.CU_STREAM_NON_BLOCKING), "cuStreamCreate(compute)");
        } else {
            this.computeStream = CudaHandles.stream(engineStream);
            this.ownsComputeStream = false;
        }
        this.kernels = new CudaKernels();
        byte[] raw = new byte[256];
        Cuda.check(JCudaDriver.cuDeviceGetName(raw, raw.length, device), "cuDeviceGetName");
        int len = 0;
        while (len < raw.length && raw[len] != 0) {
            len++;
        }
        this.name = "cuda:" + ordinal + " (" + new String(raw, 0, len, StandardCharsets.US_ASCII) + ")";
    }

    /**
     * Opens device {@code ordinal} with the default completion strategy.
     *
     * @throws CudaException with one line saying what is missing (driver, device) and to use the host backend
     */
    public static CudaDevice open(int ordinal) {
        return new CudaDevice(ordinal, CompletionStrategy.DEFAULT, PackSite.DEVICE, 0);
    }

    /** Opens device {@code ordinal} with the given completion strategy. */
    public static CudaDevice open(int ordinal, CompletionStrategy completion) {
        return new CudaDevice(ordinal, completion, PackSite.DEVICE, 0);
    }

    /**
     * Opens device {@code ordinal} with the given completion strategy and pack site: every ring it opens packs there
     * ({@link PackSite#HOST} for a sidecar next to an engine in another process).
     */
    public static CudaDevice open(int ordinal, CompletionStrategy completion, PackSite packSite) {
        return new CudaDevice(ordinal, completion, Objects.requireNonNull(packSite, "packSite"), 0);
    }

    /**
     * Attaches to an engine that already runs on device {@code ordinal}'s primary context (as PyTorch does): the pack
     * kernel is enqueued on the engine's own compute stream {@code engineStream} (a raw {@code CUstream} handle, e.g.
     * {@code torch.cuda.current_stream().cuda_stream}), right behind its forward pass. The stream stays the engine's:
     * closing this device does not destroy it. Wrap the engine's routing and slot-mapping memory with
     * {@link CudaBuffer#wrap}.
     *
     * @throws IllegalArgumentException for handle 0 (the legacy default stream)
     */
    public static CudaDevice attach(int ordinal, long engineStream, CompletionStrategy completion) {
        if (engineStream == 0) {
            throw new IllegalArgumentException("engineStream 0 is the legacy default stream; pass the engine's own stream handle");
        }
        return new CudaDevice(ordinal, completion, PackSite.DEVICE, engineStream);
    }

    /**
     * Makes this device's context current on the calling thread. Every method of the backend does this itself; call it
     * before driver API calls of your own (your own kernels on {@link #computeStream()}, say).
     */
    public void bind() {
        Cuda.check(JCudaDriver.cuCtxSetCurrent(context), "cuCtxSetCurrent");
    }

    /** The compute stream: the engine's forward pass and the pack kernel run on it, in order. */
    public CUstream computeStream() {
        return computeStream;
    }

    CudaKernels kernels() {
        return kernels;
    }

    /** The completion strategy rings of this device use. */
    public CompletionStrategy completion() {
        return completion;
    }

    /** Where rings of this device pack a step's routing. */
    public PackSite packSite() {
        return packSite;
    }

    @Override
    public String name() {
        return name;
    }

    @Override
    public StagingRing openRing(RingSpec spec) {
        return openRing(spec, completion);
    }

    /** Opens a ring that uses {@code strategy} rather than the device's completion strategy (it packs at {@link #packSite()}). */
    public StagingRing openRing(RingSpec spec, CompletionStrategy strategy) {
        return packSite == PackSite.HOST ? new CudaHostPackRing(this, spec, strategy) : new CudaStagingRing(this, spec, strategy);
    }

    @Override
    public CudaBuffer allocate(long bytes) {
        return new CudaBuffer(this, bytes);
    }

    @Override
    public void write(DeviceBuffer dst, long dstOffset, ByteBuffer src) {
        CudaBuffer to = cast(dst);
        int n = src.remaining();
        if (dstOffset < 0 || dstOffset + n > to.byteSize()) {
            throw new IllegalArgumentException("write of " + n + " bytes at " + dstOffset + " overruns a buffer of " + to.byteSize());
        }
        bind();
        ByteBuffer from = src.slice();
        Cuda.check(JCudaDriver.cuMemcpyHtoDAsync(to.pointer().withByteOffset(dstOffset), Pointer.to(from), n, computeStream),
                "cuMemcpyHtoDAsync");
        Cuda.check(JCudaDriver.cuStreamSynchronize(computeStream), "cuStreamSynchronize(compute)");
        src.position(src.position() + n);
    }

    @Override
    public void read(DeviceBuffer src, long srcOffset, ByteBuffer dst) {
        CudaBuffer from = cast(src);
        int n = dst.remaining();
        if (srcOffset < 0 || srcOffset + n > from.byteSize()) {
            throw new IllegalArgumentException("read of " + n + " bytes at " + srcOffset + " overruns a buffer of " + from.byteSize());
        }
        bind();
        ByteBuffer to = dst.slice();
        Cuda.check(JCudaDriver.cuMemcpyDtoHAsync(Pointer.to(to), from.pointer().withByteOffset(srcOffset), n, computeStream),
                "cuMemcpyDtoHAsync");
        Cuda.check(JCudaDriver.cuStreamSynchronize(computeStream), "cuStreamSynchronize(compute)");
        dst.position(dst.position() + n);
    }

    /**
     * Launches the synthetic MoE gate on the compute stream: int32 ids {@code [tokens, layers, topK]} into {@code out},
     * from pseudo-random logits of {@code (seed, token, layer, expert)}, plus {@code extraWork} multiply-adds per
     * (token, layer) standing in for the rest of a forward pass. Returns without waiting.
     */
    public void launchGate(CudaBuffer out, int tokens, RoutingShape shape, long seed, int extraWork, CudaBuffer scratch) {
        if ((long) tokens * shape.idsPerRow() * 4 > out.byteSize()) {
            throw new IllegalArgumentException("gate output of " + out.byteSize() + " bytes is too small for " + tokens + " tokens");
        }
        if (tokens == 0) {
            return;
        }
        bind();
        Pointer params = Pointer.to(Pointer.to(out.pointer()), Pointer.to(new int[] {tokens}), Pointer.to(new int[] {shape.moeLayers()}),
                Pointer.to(new int[] {shape.topK()}), Pointer.to(new int[] {shape.numExperts()}), Pointer.to(new long[] {seed}),
                Pointer.to(new int[] {extraWork}), Pointer.to(scratch.pointer()));
        long threads = (long) tokens * shape.moeLayers();
        int blocks = (int) Math.min((threads + 127) / 128, 132L * 16);
        Cuda.check(JCudaDriver.cuLaunchKernel(kernels.gate, blocks, 1, 1, 128, 1, 1, 0, computeStream, params, null), "cuLaunchKernel(r3_gate)");
    }

    /**
     * Opens a slice of an allocation another process on this GPU exported ({@code cudaIpcGetMemHandle}; PyTorch:
     * {@code tensor.untyped_storage()._share_cuda_()}): {@code handle} is the 64-byte {@code cudaIpcMemHandle_t},
     * {@code offset} the slice's byte offset in that allocation. Each allocation is mapped once however many slices
     * are open; closing the last slice unmaps it. The exporter's memory is never freed from here.
     *
     * @throws IllegalArgumentException for a handle that is not 64 bytes or a range outside the allocation
     * @throws CudaException when the driver refuses the handle (another GPU, a freed allocation, this same process)
     */
    @Override
    public CudaBuffer openExportedBuffer(byte[] handle, long offset, long bytes) {
        return imported.open(handle, offset, bytes);
    }

    /** How many exported allocations are mapped into this context now (each once, however many slices are open). */
    public int importedAllocations() {
        return imported.mappedAllocations();
    }

    /** Opens another process's interprocess event from its 64-byte {@code cudaIpcEventHandle_t}. */
    @Override
    public InterprocessEvent openExportedEvent(byte[] handle) {
        return CudaInterprocessEvent.open(this, handle);
    }

    /** Creates an interprocess event (timing disabled) whose handle another process on this GPU can open. */
    @Override
    public InterprocessEvent createExportedEvent() {
        return CudaInterprocessEvent.create(this);
    }

    /** Pinned staging copied to device memory by {@code cuMemcpyHtoDAsync} on the compute stream. */
    @Override
    public UploadStaging openUploadStaging(int bytes) {
        return new CudaUploadStaging(this, bytes);
    }

    /** Waits for the compute stream. */
    public void synchronizeCompute() {
        bind();
        Cuda.check(JCudaDriver.cuStreamSynchronize(computeStream), "cuStreamSynchronize(compute)");
    }

    /** Rings and buffers must be closed first. */
    @Override
    public void close() {
        bind();
        JCudaDriver.cuStreamSynchronize(computeStream);
        if (ownsComputeStream) {
            JCudaDriver.cuStreamDestroy(computeStream);
        }
        kernels.unload();
        JCudaDriver.cuDevicePrimaryCtxRelease(device);
    }

    static CudaBuffer cast(DeviceBuffer buffer) {
        if (buffer instanceof CudaBuffer b) {
            return b;
        }
        throw new IllegalArgumentException("buffer " + buffer.getClass().getSimpleName() + " does not belong to a CUDA device");
    }

    @Override
    public String toString() {
        return name + " ordinal " + ordinal;
    }
}
