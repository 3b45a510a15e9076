package dev.routingreplay.cuda;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.RoutingBuffer;
import dev.routingreplay.core.event.SlotMappingBuffer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/** The engine's side of a GPU benchmark: routing ids, a slot mapping (token t -> slot t mod the slot capacity), gate scratch. */
final class BenchEngineBuffers implements AutoCloseable {
    /** Slots of the benchmarks' stores; slot mappings wrap around it. */
    static final int SLOT_CAPACITY = 16384;

    final CudaBuffer ids;
    final CudaBuffer slots;
    final CudaBuffer scratch;
    final RoutingBuffer routing;
    final SlotMappingBuffer slotMapping;

    BenchEngineBuffers(CudaDevice gpu, RoutingShape shape, int tokens) {
        ids = gpu.allocate((long) tokens * shape.idsPerRow() * 4);
        slots = gpu.allocate(tokens * 8L);
        scratch = gpu.allocate(64);
        ByteBuffer mapping = ByteBuffer.allocateDirect(tokens * 8).order(ByteOrder.nativeOrder());
        for (int t = 0; t < tokens; t++) {
            mapping.putLong(t * 8, t % SLOT_CAPACITY);
        }
        gpu.write(slots, 0, mapping);
        routing = new RoutingBuffer(ids, ElementType.INT32, shape.moeLayers(), shape.topK());
        slotMapping = new SlotMappingBuffer(slots, ElementType.INT64);
    }

    CaptureStep step(long stepId, int tokens) {
        return new CaptureStep(stepId, tokens, routing, slotMapping);
    }

    @Override
    public void close() {
        ids.close();
        slots.close();
        scratch.close();
    }
}
