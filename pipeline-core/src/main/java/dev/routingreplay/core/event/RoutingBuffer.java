package dev.routingreplay.core.event;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.memory.DeviceBuffer;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The engine's device buffer of routing ids, laid out {@code [tokens, layers, topK]} row-major. Engines keep one
 * such buffer and overwrite it every forward pass, so one descriptor serves every step.
 *
 * <p>Generation: an engine that calls {@link #beginOverwrite()} before each forward pass that writes the buffer lets
 * the pipeline prove that it reads the buffer before it is overwritten. Each {@link CaptureStep} carries the
 * generation its forward pass wrote; when the pipeline receives a step whose generation is older than the buffer's,
 * something between the engine and the pipeline held the event back (a {@code publishOn}, {@code cache} or
 * {@code buffer} operator) while the engine wrote the buffer again, and the pipeline fails with an error that says
 * so instead of storing another step's routing. An engine that never calls it is not checked.
 */
public final class RoutingBuffer {
    private final DeviceBuffer buffer;
    private final ElementType elementType;
    private final int layers;
    private final int topK;
    private final AtomicLong generation = new AtomicLong();

    /**
     * Describes {@code buffer}.
     *
     * @param buffer device memory holding the ids
     * @param elementType int32 or int64 ids
     * @param layers MoE layers per token in this buffer
     * @param topK ids per token and layer in this buffer
     * @throws IllegalArgumentException when a field is null or not positive
     */
    public RoutingBuffer(DeviceBuffer buffer, ElementType elementType, int layers, int topK) {
        if (buffer == null || elementType == null) {
            throw new IllegalArgumentException("routing buffer and elementType must not be null");
        }
        if (layers <= 0 || topK <= 0) {
            throw new IllegalArgumentException("routing layers and topK must be positive, were " + layers + " and " + topK);
        }
        this.buffer = buffer;
        this.elementType = elementType;
        this.layers = layers;
        this.topK = topK;
    }

    /** Device memory holding the ids. */
    public DeviceBuffer buffer() {
        return buffer;
    }

    /** int32 or int64 ids. */
    public ElementType elementType() {
        return elementType;
    }

    /** MoE layers per token in this buffer. */
    public int layers() {
        return layers;
    }

    /** Ids per token and layer in this buffer. */
    public int topK() {
        return topK;
    }

    /** How many tokens fit in the buffer. */
    public long capacityTokens() {
        return buffer.byteSize() / ((long) layers * topK * elementType.bytes());
    }

    /**
     * The engine is about to write the buffer again (call it before the forward pass is launched): advances the
     * generation, which makes any not-yet-captured step of an older generation fail instead of reading the new data.
     *
     * @return the new generation, which the next {@link CaptureStep} built on this buffer carries
     */
    public long beginOverwrite() {
        return generation.incrementAndGet();
    }

    /** The generation of the data now in the buffer: how many times {@link #beginOverwrite()} was called. */
    public long generation() {
        return generation.get();
    }

    @Override
    public String toString() {
        return "RoutingBuffer[" + elementType + " [tokens, " + layers + ", " + topK + "], " + buffer.byteSize() + " bytes]";
    }
}
