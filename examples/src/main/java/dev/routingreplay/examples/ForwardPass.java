package dev.routingreplay.examples;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.RoutingDevice;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.RoutingBuffer;
import dev.routingreplay.core.event.SlotMappingBuffer;
import dev.routingreplay.core.memory.DeviceBuffer;
import dev.routingreplay.cuda.CudaDevice;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The simulated engine's forward pass: writes a step's routing ({@link ExpertRouting#mix} of each token's key and
 * position) and slot mapping into the engine's device buffers, overwriting the previous step's, and returns the
 * {@link CaptureStep} that describes them. How the routing gets there is the backend's: {@link HostForwardPass}
 * computes it on the CPU and copies it, {@link CudaForwardPass} runs the gate on the GPU.
 *
 * <p>Engine thread only. Padding tokens have position -1: their routing is an invalid id the pipeline must skip.
 */
abstract class ForwardPass implements AutoCloseable {
    /** The invalid id a padding token's routing holds; the pipeline skips the token by its slot -1. */
    static final int PADDING_ID_OFFSET = 7;

    final RoutingDevice device;
    final RoutingShape shape;
    final DeviceBuffer routingMemory;
    private final DeviceBuffer slotsMemory;
    private final RoutingBuffer routing;
    private final SlotMappingBuffer slotMapping;
    private final ByteBuffer slotsHost;

    ForwardPass(RoutingDevice device, RoutingShape shape, int maxTokens) {
        this.device = device;
        this.shape = shape;
        this.routingMemory = device.allocate((long) maxTokens * shape.idsPerRow() * 4);
        this.slotsMemory = device.allocate((long) maxTokens * 8);
        this.routing = new RoutingBuffer(routingMemory, ElementType.INT32, shape.moeLayers(), shape.topK());
        this.slotMapping = new SlotMappingBuffer(slotsMemory, ElementType.INT64);
        this.slotsHost = ByteBuffer.allocateDirect(maxTokens * 8).order(ByteOrder.nativeOrder());
    }

    /** The forward pass for {@code device}: on the GPU for the CUDA backend, else on the CPU. */
    static ForwardPass on(RoutingDevice device, RoutingShape shape, int maxTokens) {
        return device instanceof CudaDevice gpu ? new CudaForwardPass(gpu, shape, maxTokens) : new HostForwardPass(device, shape, maxTokens);
    }

    /**
     * Runs step {@code stepId} over its first {@code tokens} entries: token t has key {@code keys[t]}, position
     * {@code positions[t]} (-1: padding) and slot {@code slots[t]}. A step emitted earlier and not yet captured fails
     * validation from now on ({@link RoutingBuffer#beginOverwrite}), as it would in an engine.
     */
    final CaptureStep forward(long stepId, int tokens, long[] keys, int[] positions, long[] slots) {
        routing.beginOverwrite();
        for (int t = 0; t < tokens; t++) {
            slotsHost.putLong(t * 8, slots[t]);
        }
        writeRouting(tokens, keys, positions);
        device.write(slotsMemory, 0, slotsHost.duplicate().position(0).limit(tokens * 8));
        return new CaptureStep(stepId, tokens, routing, slotMapping);
    }

    /** Writes the routing of {@code tokens} tokens into {@link #routingMemory}, done when this returns or in stream order. */
    abstract void writeRouting(int tokens, long[] keys, int[] positions);

    /** Frees the device buffers. */
    @Override
    public void close() {
        routingMemory.close();
        slotsMemory.close();
    }
}
