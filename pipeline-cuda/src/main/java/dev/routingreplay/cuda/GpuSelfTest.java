package dev.routingreplay.cuda;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.ModelPreset;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.device.RingSlotLayout;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.device.StagingRing;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoutingBuffer;
import dev.routingreplay.core.event.SlotMappingBuffer;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.host.HostDeviceBuffer;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.pipeline.CapturePipelineException;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.sink.RequestRouting;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.JCudaDriver;
import reactor.core.publisher.Flux;

/**
 * The GPU correctness run (needs a CUDA device; run from the bundle, see docs/gpu.md):
 * <ol>
 *   <li>the CUDA pack equals the host backend's byte for byte (status counts, slots, rows) for every model preset,
 *       int32 and int64 ids and slots, token counts 0, 1, random and the ring capacity, with staging and pinned
 *       memory poisoned first so an unwritten byte is caught, and with planted invalid ids and slots;</li>
 *   <li>a pipeline over the CUDA backend with the synthetic gate on the GPU stores exactly what the gate produced;</li>
 *   <li>ring reuse under a slow sink loses nothing and keeps at most ring-depth captures in flight;</li>
 *   <li>a real CUDA error (a pack kernel reading an unmapped address) terminates the pipeline with an error naming the
 *       step and the CUDA error (last: the error poisons the context).</li>
 * </ol>
 * Prints one line per check and exits 0 only when all pass.
 */
public final class GpuSelfTest {
    private static int failures;
    private static int passes;

    private GpuSelfTest() {
    }

    /** Runs every check with the completion strategy named in {@code args[0]} (default POLL). */
    public static void main(String[] args) throws Exception {
        CompletionStrategy strategy = args.length > 0 ? CompletionStrategy.valueOf(args[0]) : CompletionStrategy.DEFAULT;
        String unavailable = Cuda.unavailableReason();
        if (unavailable != null) {
            System.err.println("GPU self-test: " + unavailable);
            System.exit(2);
        }
        try (CudaDevice gpu = CudaDevice.open(0, strategy)) {
            System.out.println("device: " + gpu.name() + ", completion " + strategy);
            packEqualsHost(gpu);
            pipelineStoresWhatTheGateProduced(gpu, gpu, 3);
            pipelineStoresWhatTheGateProduced(gpu, gpu, 2);
            attachedToAnEnginesStreamAndMemory(gpu);
            aFailedRingAllocationFreesWhatItAllocated(gpu);
            cudaErrorSurfaces(gpu);
        }
        System.out.printf("GPU self-test: %d passed, %d failed%n", passes, failures);
        System.exit(failures == 0 ? 0 : 1);
    }

    private static void report(boolean ok, String what) {
        if (ok) {
            passes++;
        } else {
            failures++;
        }
        System.out.println((ok ? "PASS " : "FAIL ") + what);
    }

    private static void packEqualsHost(CudaDevice gpu) throws Exception {
        HostDevice host = new HostDevice();
        Random rng = new Random(42);
        int maxTokens = 4096;
        int slotCapacity = 1 << 20;
        for (ModelPreset preset : ModelPreset.values()) {
            RoutingShape shape = preset.shape();
            RingSpec spec = new RingSpec(shape, 1, maxTokens, slotCapacity);
            RingSlotLayout layout = spec.layout();
            CudaStagingRing gpuRing = (CudaStagingRing) gpu.openRing(spec);
            StagingRing hostRing = host.openRing(spec);
            CudaBuffer gpuIds = gpu.allocate((long) maxTokens * shape.idsPerRow() * 8);
            CudaBuffer gpuSlots = gpu.allocate(maxTokens * 8L);
            HostDeviceBuffer hostIds = host.allocate((long) maxTokens * shape.idsPerRow() * 8);
            HostDeviceBuffer hostSlots = host.allocate(maxTokens * 8L);
            try {
                for (ElementType type : ElementType.values()) {
                    for (int tokens : new int[] {0, 1, 1 + rng.nextInt(maxTokens - 1), maxTokens}) {
                        for (boolean plantInvalid : new boolean[] {false, true}) {
                            ByteBuffer ids = ByteBuffer.allocateDirect(tokens * shape.idsPerRow() * type.bytes()).order(ByteOrder.nativeOrder());
                            ByteBuffer slots = ByteBuffer.allocateDirect(tokens * type.bytes()).order(ByteOrder.nativeOrder());
                            for (int t = 0; t < tokens; t++) {
                                long slot = rng.nextInt(50) == 0 ? -1 : rng.nextInt(slotCapacity);
                                if (plantInvalid && rng.nextInt(200) == 0) {
                                    slot = slotCapacity + rng.nextInt(5);
                                }
                                put(slots, type, t, slot);
                                for (int j = 0; j < shape.idsPerRow(); j++) {
                                    long id = rng.nextInt(shape.numExperts());
                                    if (plantInvalid && rng.nextInt(5000) == 0) {
                                        id = rng.nextBoolean() ? -1 - rng.nextInt(3) : shape.numExperts() + rng.nextInt(3);
                                    }
                                    put(ids, type, t * shape.idsPerRow() + j, id);
                                }
                            }
                            gpu.write(gpuIds, 0, ids.duplicate());
                            gpu.write(gpuSlots, 0, slots.duplicate());
                            hostIds.memory().put(0, ids, 0, ids.capacity());
                            hostSlots.memory().put(0, slots, 0, slots.capacity());
                            gpuRing.poison(0, (byte) 0xA5);
                            CaptureStep gpuStep = new CaptureStep(tokens, tokens, new RoutingBuffer(gpuIds, type, shape.moeLayers(), shape.topK()),
                                    new SlotMappingBuffer(gpuSlots, type));
                            CaptureStep hostStep = new CaptureStep(tokens, tokens, new RoutingBuffer(hostIds, type, shape.moeLayers(), shape.topK()),
                                    new SlotMappingBuffer(hostSlots, type));
                            CompletableFuture<Throwable> gpuDone = new CompletableFuture<>();
                            CompletableFuture<Throwable> hostDone = new CompletableFuture<>();
                            gpuRing.enqueueCapture(0, gpuStep, (i, e) -> gpuDone.complete(e));
                            hostRing.enqueueCapture(0, hostStep, (i, e) -> hostDone.complete(e));
                            Throwable ge = gpuDone.get(30, TimeUnit.SECONDS);
                            Throwable he = hostDone.get(30, TimeUnit.SECONDS);
                            String what = preset.cliName() + " " + type + " tokens=" + tokens + (plantInvalid ? " with invalid entries" : "");
                            report(ge == null && he == null && samePack(gpuRing.hostSlot(0), hostRing.hostSlot(0), layout, tokens, spec,
                                    ids, type), "pack equals host: " + what);
                        }
                    }
                }
            } finally {
                gpuRing.close();
                hostRing.close();
                gpuIds.close();
                gpuSlots.close();
                hostIds.close();
                hostSlots.close();
            }
        }
    }

    private static boolean samePack(ByteBuffer gpu, ByteBuffer host, RingSlotLayout layout, int tokens, RingSpec spec, ByteBuffer ids,
            ElementType type) {
        if (gpu.getInt(RingSlotLayout.INVALID_ID_COUNT) != host.getInt(RingSlotLayout.INVALID_ID_COUNT)
                || gpu.getInt(RingSlotLayout.INVALID_SLOT_COUNT) != host.getInt(RingSlotLayout.INVALID_SLOT_COUNT)) {
            System.out.println("  status counts differ: gpu " + gpu.getInt(0) + "/" + gpu.getInt(24) + " host " + host.getInt(0) + "/" + host.getInt(24));
            return false;
        }
        if (gpu.getInt(RingSlotLayout.INVALID_ID_COUNT) > 0) {
            int t = gpu.getInt(RingSlotLayout.INVALID_ID_TOKEN);
            int j = gpu.getInt(RingSlotLayout.INVALID_ID_INDEX);
            long value = type == ElementType.INT32 ? ids.getInt((t * spec.shape().idsPerRow() + j) * 4) : ids.getLong((t * spec.shape().idsPerRow() + j) * 8);
            if (value != gpu.getLong(RingSlotLayout.INVALID_ID_VALUE) || value >= 0 && value < spec.shape().numExperts()) {
                System.out.println("  recorded invalid id is not an invalid entry: token " + t + " index " + j);
                return false;
            }
        }
        int headerEnd = layout.headerBytes(tokens);
        for (int i = RingSlotLayout.SLOTS_OFFSET; i < headerEnd; i++) {
            if (gpu.get(i) != host.get(i)) {
                System.out.println("  slot bytes differ at offset " + i);
                return false;
            }
        }
        int rowsEnd = layout.rowsOffset() + layout.rowBytesFor(tokens);
        for (int i = layout.rowsOffset(); i < rowsEnd; i++) {
            if (gpu.get(i) != host.get(i)) {
                System.out.println("  row bytes differ at offset " + i + " (token " + (i - layout.rowsOffset()) / layout.rowBytes() + "): gpu "
                        + (gpu.get(i) & 0xFF) + " host " + (host.get(i) & 0xFF));
                return false;
            }
        }
        return true;
    }

    private static void put(ByteBuffer b, ElementType type, int index, long value) {
        if (type == ElementType.INT32) {
            b.putInt(index * 4, (int) value);
        } else {
            b.putLong(index * 8, value);
        }
    }

    /**
     * The engine owns a stream and its buffers (made here with the driver API, outside the backend); the backend attaches
     * to that stream and wraps those addresses, as it would a framework's current stream and tensors.
     */
    private static void attachedToAnEnginesStreamAndMemory(CudaDevice gpu) throws Exception {
        gpu.bind();
        jcuda.driver.CUstream engineStream = new jcuda.driver.CUstream();
        Cuda.check(jcuda.driver.JCudaDriver.cuStreamCreate(engineStream, jcuda.driver.CUstream_flags.CU_STREAM_NON_BLOCKING),
                "cuStreamCreate(engine)");
        try (CudaDevice attached = CudaDevice.attach(0, CudaHandles.address(engineStream), CompletionStrategy.POLL)) {
            pipelineStoresWhatTheGateProduced(attached, gpu, 3);
        } finally {
            gpu.bind();
            jcuda.driver.JCudaDriver.cuStreamDestroy(engineStream);
        }
    }

    /** A buffer of {@code owner}'s memory as {@code user} sees it (wrapped when they differ). */
    private static CudaBuffer buffer(CudaDevice user, CudaDevice owner, long bytes, List<CudaBuffer> owned) {
        CudaBuffer b = owner.allocate(bytes);
        owned.add(b);
        return user == owner ? b : CudaBuffer.wrap(user, b.address(), bytes);
    }

    /** Requests of 96 tokens, written 32 tokens a step by the GPU gate; a slow sink on depth 2. */
    private static void pipelineStoresWhatTheGateProduced(CudaDevice gpu, CudaDevice owner, int depth) throws Exception {
        RoutingShape shape = ModelPreset.DEEPSEEK_V3.shape();
        int requests = 150;
        int perStep = 32;
        int seqLen = 96;
        int slotsPerRequest = seqLen;
        int slotCapacity = 64 * slotsPerRequest;
        List<CudaBuffer> owned = new ArrayList<>();
        CudaBuffer ids = buffer(gpu, owner, (long) perStep * shape.idsPerRow() * 4, owned);
        CudaBuffer slotBuffer = buffer(gpu, owner, perStep * 8L, owned);
        CudaBuffer scratch = buffer(gpu, owner, 64, owned);
        RoutingBuffer routing = new RoutingBuffer(ids, ElementType.INT32, shape.moeLayers(), shape.topK());
        SlotMappingBuffer slotMapping = new SlotMappingBuffer(slotBuffer, ElementType.INT64);
        int[][] expected = new int[requests * seqLen][];
        AtomicInteger inFlightMax = new AtomicInteger();
        boolean slow = depth == 2;
        MemoryRoutingSink sink = new MemoryRoutingSink(shape, slotCapacity) {
            @Override
            public int scatter(CapturedStep step) {
                if (slow) {
                    try {
                        Thread.sleep(1);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
                return super.scatter(step);
            }
        };
        CapturePipeline pipeline = CapturePipeline.builder().name("gpu-selftest").device(gpu).sink(sink).ringDepth(depth)
                .maxTokensPerStep(perStep).build();
        ByteBuffer hostIds = ByteBuffer.allocateDirect(perStep * shape.idsPerRow() * 4).order(ByteOrder.nativeOrder());
        ByteBuffer hostSlots = ByteBuffer.allocateDirect(perStep * 8).order(ByteOrder.nativeOrder());
        List<String> problems = new ArrayList<>();
        Flux<EngineEvent> events = Flux.range(0, requests * (2 + seqLen / perStep)).map(n -> {
            int per = 2 + seqLen / perStep;
            int r = n / per;
            int phase = n % per;
            if (phase == 0) {
                return new RequestAdmitted("gpu-" + r);
            }
            int[] slots = new int[seqLen];
            for (int p = 0; p < seqLen; p++) {
                slots[p] = (r % 64) * slotsPerRequest + p;
            }
            if (phase == per - 1) {
                return new RequestFinished("gpu-" + r, slots);
            }
            int chunk = phase - 1;
            long stepId = (long) r * 8 + chunk;
            gpu.launchGate(ids, perStep, shape, stepId, 0, scratch);
            // the oracle: read the gate's output back before the pipeline sees the step
            gpu.read(ids, 0, hostIds.clear());
            for (int t = 0; t < perStep; t++) {
                int position = chunk * perStep + t;
                hostSlots.putLong(t * 8, slots[position]);
                int[] row = new int[shape.idsPerRow()];
                for (int j = 0; j < row.length; j++) {
                    row[j] = hostIds.getInt((t * shape.idsPerRow() + j) * 4);
                }
                expected[r * seqLen + position] = row;
            }
            gpu.write(slotBuffer, 0, hostSlots.duplicate().clear());
            inFlightMax.accumulateAndGet(pipeline.metrics().ringOccupancy() + 1, Math::max);
            return new CaptureStep(stepId, perStep, routing, slotMapping);
        });
        long acked = events.transform(pipeline).count().block(Duration.ofMinutes(3));
        for (int r = 0; r < requests && problems.size() < 3; r++) {
            RequestRouting got = sink.finished("gpu-" + r);
            if (got == null) {
                problems.add("gpu-" + r + " missing");
                continue;
            }
            int[] flat = got.toIntArray();
            for (int p = 0; p < seqLen && problems.size() < 3; p++) {
                for (int j = 0; j < shape.idsPerRow(); j++) {
                    if (flat[p * shape.idsPerRow() + j] != expected[r * seqLen + p][j]) {
                        problems.add("gpu-" + r + " position " + p + " id " + j);
                        break;
                    }
                }
            }
        }
        report(problems.isEmpty() && acked == requests * (2L + seqLen / perStep) && inFlightMax.get() <= depth,
                "pipeline over CUDA" + (gpu != owner ? " attached to an engine's stream and memory" : "") + ", depth " + depth
                        + (slow ? " with a slow sink" : "") + ": " + requests + " requests stored as the gate produced them"
                        + (problems.isEmpty() ? "" : " " + problems) + ", ring slots in use when a step was emitted <= " + depth + " (max seen " + inFlightMax.get() + ")");
        sink.close();
        for (CudaBuffer b : owned) {
            b.close();
        }
    }

    /**
     * A ring whose allocation fails part way (device memory runs out at its fourth slot) frees the slots, events and
     * stream it had made: the device's free memory is the same before and after the failed open.
     */
    private static void aFailedRingAllocationFreesWhatItAllocated(CudaDevice gpu) {
        gpu.bind();
        RoutingShape shape = ModelPreset.DEEPSEEK_V3.shape();
        int maxTokens = (256 << 20) / shape.rowBytes(); // about 256 MiB a ring slot
        RingSpec spec = new RingSpec(shape, 16, maxTokens, 1 << 20);
        long slotBytes = spec.layout().totalBytes();
        long[] free = new long[1];
        long[] total = new long[1];
        Cuda.check(JCudaDriver.cuMemGetInfo(free, total), "cuMemGetInfo");
        CUdeviceptr hog = new CUdeviceptr();
        long hogBytes = free[0] - (long) (3.5 * slotBytes) - (64L << 20);
        Cuda.check(JCudaDriver.cuMemAlloc(hog, hogBytes), "cuMemAlloc(hog " + hogBytes + ")");
        try {
            Cuda.check(JCudaDriver.cuMemGetInfo(free, total), "cuMemGetInfo");
            long before = free[0];
            Throwable error = null;
            try {
                gpu.openRing(spec).close();
            } catch (Throwable t) {
                error = t;
            }
            Cuda.check(JCudaDriver.cuMemGetInfo(free, total), "cuMemGetInfo");
            long after = free[0];
            boolean ok = error instanceof CudaException && error.getMessage().contains("cuMemAlloc") && after == before;
            report(ok, "a ring whose device allocation fails part way frees what it made: " + (error == null ? "no error" : error.getMessage())
                    + "; free device memory before " + before + ", after " + after);
        } finally {
            JCudaDriver.cuMemFree(hog);
        }
    }

    /** Last: a pack kernel reads an unmapped address; the context is unusable afterwards. */
    private static void cudaErrorSurfaces(CudaDevice gpu) {
        RoutingShape shape = ModelPreset.QWEN3_30B_A3B.shape();
        CudaBuffer bogus = CudaBuffer.wrap(gpu, 0x10000L, 1L << 30);
        CudaBuffer slots = gpu.allocate(8 * 8);
        gpu.write(slots, 0, ByteBuffer.allocateDirect(64).order(ByteOrder.nativeOrder()));
        MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64);
        CapturePipeline pipeline = CapturePipeline.builder().name("gpu-error").device(gpu).sink(sink).ringDepth(2).maxTokensPerStep(8).build();
        Throwable error = null;
        try {
            Flux.<EngineEvent>just(new CaptureStep(77, 8, new RoutingBuffer(bogus, ElementType.INT32, shape.moeLayers(), shape.topK()),
                    new SlotMappingBuffer(slots, ElementType.INT64))).transform(pipeline).blockLast(Duration.ofSeconds(60));
        } catch (Throwable t) {
            error = t;
        }
        String message = error == null ? "no error" : error.getMessage();
        boolean ok = error instanceof CapturePipelineException p && p.stepId() == 77 && message.contains("CUDA_ERROR");
        report(ok, "a CUDA error surfaces as an error signal: " + message);
    }
}
