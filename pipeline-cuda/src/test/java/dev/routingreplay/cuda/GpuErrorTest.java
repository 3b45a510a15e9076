package dev.routingreplay.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.ModelPreset;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RoutingBuffer;
import dev.routingreplay.core.event.SlotMappingBuffer;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.pipeline.CapturePipelineException;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import reactor.core.publisher.Flux;

/**
 * A real CUDA error (a pack kernel reading an unmapped address) terminates the pipeline with an error naming the step
 * and the CUDA error. Runs last of all test classes ({@code @Order}, see junit-platform.properties): the error poisons
 * the process's CUDA context, so the device is not closed and no GPU test may follow in this JVM. Needs a CUDA device;
 * skipped without.
 */
@ExtendWith(GpuTestDevice.class)
@Order(Integer.MAX_VALUE)
class GpuErrorTest {
    @Test
    void aCudaErrorSurfacesAsAnErrorSignalNamingTheStep(CudaDevice gpu) {
        RoutingShape shape = ModelPreset.QWEN3_30B_A3B.shape();
        CudaBuffer bogus = CudaBuffer.wrap(gpu, 0x10000L, 1L << 30);
        CudaBuffer slots = gpu.allocate(8 * 8);
        gpu.write(slots, 0, ByteBuffer.allocateDirect(64).order(ByteOrder.nativeOrder()));
        MemoryRoutingSink sink = new MemoryRoutingSink(shape, 64);
        CapturePipeline pipeline = CapturePipeline.builder().name("gpu-error").device(gpu).sink(sink).ringDepth(2).maxTokensPerStep(8).build();
        Flux<EngineEvent> step = Flux.just(new CaptureStep(77, 8, new RoutingBuffer(bogus, ElementType.INT32, shape.moeLayers(), shape.topK()),
                new SlotMappingBuffer(slots, ElementType.INT64)));
        Throwable error = assertThrows(Throwable.class, () -> step.transform(pipeline).blockLast(Duration.ofSeconds(60)));
        CapturePipelineException failed = assertInstanceOf(CapturePipelineException.class, error, String.valueOf(error));
        assertEquals(77, failed.stepId(), failed.getMessage());
        assertTrue(failed.getMessage().contains("CUDA_ERROR"), failed.getMessage());
    }
}
