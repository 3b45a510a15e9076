package dev.routingreplay.core.testing;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.RoutingBuffer;
import dev.routingreplay.core.event.SlotMappingBuffer;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.host.HostDeviceBuffer;
import java.nio.ByteBuffer;

/**
 * A stand-in for an engine on the host device: one routing buffer and one slot-mapping buffer, overwritten by every
 * step exactly as a forward pass overwrites the engine's buffers. Build steps lazily (inside the Flux), never ahead.
 */
public final class HostEngine implements AutoCloseable {
    /** Computes the engine's id for (token, layer, k) of a step. */
    @FunctionalInterface
    public interface IdSource {
        long id(int token, int layer, int k);
    }

    private final RoutingShape shape;
    private final ElementType idType;
    private final ElementType slotType;
    private final HostDeviceBuffer routing;
    private final HostDeviceBuffer slots;
    private final RoutingBuffer routingBuffer;
    private final SlotMappingBuffer slotBuffer;

    /** An engine for up to {@code maxTokens} tokens a step. */
    public HostEngine(HostDevice device, RoutingShape shape, int maxTokens, ElementType idType, ElementType slotType) {
        this.shape = shape;
        this.idType = idType;
        this.slotType = slotType;
        this.routing = device.allocate((long) maxTokens * shape.idsPerRow() * idType.bytes());
        this.slots = device.allocate((long) maxTokens * slotType.bytes());
        this.routingBuffer = new RoutingBuffer(routing, idType, shape.moeLayers(), shape.topK());
        this.slotBuffer = new SlotMappingBuffer(slots, slotType);
    }

    /** An engine with int64 ids and int64 slots, like PyTorch's. */
    public HostEngine(HostDevice device, RoutingShape shape, int maxTokens) {
        this(device, shape, maxTokens, ElementType.INT64, ElementType.INT64);
    }

    /** Runs a "forward pass" that writes the given ids and slots, and returns the capture step for it. */
    public CaptureStep step(long stepId, long[] slotMapping, IdSource ids) {
        routingBuffer.beginOverwrite();
        ByteBuffer r = routing.memory();
        ByteBuffer s = slots.memory();
        int perRow = shape.idsPerRow();
        for (int t = 0; t < slotMapping.length; t++) {
            if (slotType == ElementType.INT32) {
                s.putInt(t * 4, (int) slotMapping[t]);
            } else {
                s.putLong(t * 8, slotMapping[t]);
            }
            for (int l = 0; l < shape.moeLayers(); l++) {
                for (int k = 0; k < shape.topK(); k++) {
                    int index = t * perRow + l * shape.topK() + k;
                    long id = ids.id(t, l, k);
                    if (idType == ElementType.INT32) {
                        r.putInt(index * 4, (int) id);
                    } else {
                        r.putLong(index * 8, id);
                    }
                }
            }
        }
        return new CaptureStep(stepId, slotMapping.length, routingBuffer, slotBuffer);
    }

    /** The slot mapping descriptor. */
    public SlotMappingBuffer slotBuffer() {
        return slotBuffer;
    }

    @Override
    public void close() {
        routing.close();
        slots.close();
    }
}
