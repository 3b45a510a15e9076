package dev.routingreplay.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.ModelPreset;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoutingBuffer;
import dev.routingreplay.core.event.SlotMappingBuffer;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.sink.RequestRouting;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import jcuda.driver.CUstream;
import jcuda.driver.CUstream_flags;
import jcuda.driver.JCudaDriver;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import reactor.core.publisher.Flux;

/**
 * A pipeline over the CUDA backend, with the synthetic gate writing each step's routing on the GPU, stores exactly what
 * the gate produced (read back before the pipeline saw the step), keeps at most ring-depth captures in flight, also
 * under a slow sink, and also attached to an engine's own stream and memory. Needs a CUDA device; skipped without.
 */
@ExtendWith(GpuTestDevice.class)
class GpuPipelineTest {
    private static final int REQUESTS = 150;
    private static final int PER_STEP = 32;
    private static final int SEQ_LEN = 96;
    @Test
    void storesWhatTheGateProducedAtDepth3(CudaDevice gpu) {
        storesWhatTheGateProduced(gpu, gpu, 3);
    }

    @Test
    void storesWhatTheGateProducedAtDepth2WithASlowSink(CudaDevice gpu) {
        storesWhatTheGateProduced(gpu, gpu, 2);
    }

    /** {@link PackSite#HOST}: raw rows cross by the copy engine and are packed on the completion thread. */
    @Test
    void storesWhatTheGateProducedWithThePackOnTheHost(CudaDevice gpu) {
        try (CudaDevice hostSite = CudaDevice.open(0, gpu.completion(), PackSite.HOST)) {
            storesWhatTheGateProduced(hostSite, hostSite, 3);
        }
    }

    /**
     * The engine owns a stream and its buffers (made here with the driver API, outside the backend); the backend attaches
     * to that stream and wraps those addresses, as it would a framework's current stream and tensors.
     */
    @Test
    void storesWhatTheGateProducedAttachedToAnEnginesStreamAndMemory(CudaDevice gpu) {
        gpu.bind();
        CUstream engineStream = new CUstream();
        Cuda.check(JCudaDriver.cuStreamCreate(engineStream, CUstream_flags.CU_STREAM_NON_BLOCKING), "cuStreamCreate(engine)");
        try (CudaDevice attached = CudaDevice.attach(0, CudaHandles.address(engineStream), CompletionStrategy.POLL)) {
            storesWhatTheGateProduced(attached, gpu, 3);
        } finally {
            gpu.bind();
            JCudaDriver.cuStreamDestroy(engineStream);
        }
    }

    /** A buffer of {@code owner}'s memory as {@code user} sees it (wrapped when they differ). */
    private static CudaBuffer buffer(CudaDevice user, CudaDevice owner, long bytes, List<CudaBuffer> owned) {
        CudaBuffer b = owner.allocate(bytes);
        owned.add(b);
        return user == owner ? b : CudaBuffer.wrap(user, b.address(), bytes);
    }

    /** Requests of 96 tokens, written 32 tokens a step by the GPU gate; depth 2 gets a slow sink. */
    private static void storesWhatTheGateProduced(CudaDevice device, CudaDevice owner, int depth) {
        RoutingShape shape = ModelPreset.DEEPSEEK_V3.shape();
        int slotCapacity = 64 * SEQ_LEN;
        int per = 2 + SEQ_LEN / PER_STEP;
        List<CudaBuffer> owned = new ArrayList<>();
        CudaBuffer ids = buffer(device, owner, (long) PER_STEP * shape.idsPerRow() * 4, owned);
        CudaBuffer slotBuffer = buffer(device, owner, PER_STEP * 8L, owned);
        CudaBuffer scratch = buffer(device, owner, 64, owned);
        RoutingBuffer routing = new RoutingBuffer(ids, ElementType.INT32, shape.moeLayers(), shape.topK());
        SlotMappingBuffer slotMapping = new SlotMappingBuffer(slotBuffer, ElementType.INT64);
        int[][] expected = new int[REQUESTS * SEQ_LEN][];
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
        CapturePipeline pipeline = CapturePipeline.builder().name("gpu-selftest").device(device).sink(sink).ringDepth(depth)
                .maxTokensPerStep(PER_STEP).build();
        ByteBuffer hostIds = ByteBuffer.allocateDirect(PER_STEP * shape.idsPerRow() * 4).order(ByteOrder.nativeOrder());
        ByteBuffer hostSlots = ByteBuffer.allocateDirect(PER_STEP * 8).order(ByteOrder.nativeOrder());
        List<String> problems = new ArrayList<>();
        try {
            long acked = Flux.range(0, REQUESTS * per).<EngineEvent>map(n -> {
                int r = n / per;
                int phase = n % per;
                if (phase == 0) {
                    return new RequestAdmitted("gpu-" + r);
                }
                int[] slots = new int[SEQ_LEN];
                for (int p = 0; p < SEQ_LEN; p++) {
                    slots[p] = (r % 64) * SEQ_LEN + p;
                }
                if (phase == per - 1) {
                    return new RequestFinished("gpu-" + r, slots);
                }
                int chunk = phase - 1;
                long stepId = (long) r * 8 + chunk;
                device.launchGate(ids, PER_STEP, shape, stepId, 0, scratch);
                // the oracle: read the gate's output back before the pipeline sees the step
                device.read(ids, 0, hostIds.clear());
                for (int t = 0; t < PER_STEP; t++) {
                    int position = chunk * PER_STEP + t;
                    hostSlots.putLong(t * 8, slots[position]);
                    int[] row = new int[shape.idsPerRow()];
                    for (int j = 0; j < row.length; j++) {
                        row[j] = hostIds.getInt((t * shape.idsPerRow() + j) * 4);
                    }
                    expected[r * SEQ_LEN + position] = row;
                }
                device.write(slotBuffer, 0, hostSlots.duplicate().clear());
                inFlightMax.accumulateAndGet(pipeline.metrics().ringOccupancy() + 1, Math::max);
                return new CaptureStep(stepId, PER_STEP, routing, slotMapping);
            }).transform(pipeline).count().block(Duration.ofMinutes(3));
            assertEquals(REQUESTS * (long) per, acked, "events acknowledged");
            for (int r = 0; r < REQUESTS && problems.size() < 3; r++) {
                RequestRouting got = sink.finished("gpu-" + r);
                if (got == null) {
                    problems.add("gpu-" + r + " missing");
                    continue;
                }
                int[] flat = got.toIntArray();
                for (int p = 0; p < SEQ_LEN && problems.size() < 3; p++) {
                    for (int j = 0; j < shape.idsPerRow(); j++) {
                        if (flat[p * shape.idsPerRow() + j] != expected[r * SEQ_LEN + p][j]) {
                            problems.add("gpu-" + r + " position " + p + " id " + j);
                            break;
                        }
                    }
                }
            }
        } finally {
            sink.close();
            for (CudaBuffer b : owned) {
                b.close();
            }
        }
        assertEquals(List.of(), problems, REQUESTS + " requests stored as the gate produced them");
        assertTrue(inFlightMax.get() <= depth, "ring slots in use when a step was emitted <= " + depth + " (max seen " + inFlightMax.get() + ")");
    }
}
