package dev.routingreplay.core.event;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.device.DeviceBuffer;

/**
 * The engine's device buffer of routing ids, laid out {@code [tokens, layers, topK]} row-major. Engines keep
 * one such buffer and overwrite it every forward pass, so one descriptor serves every step.
 *
 * @param buffer device memory holding the ids
 * @param elementType int32 or int64 ids
 * @param layers MoE layers per token in this buffer
 * @param topK ids per token and layer in this buffer
 */
public record RoutingBuffer(DeviceBuffer buffer, ElementType elementType, int layers, int topK) {
    /** Checks that no field is null or negative. */
    public RoutingBuffer {
        if (buffer == null || elementType == null) {
            throw new IllegalArgumentException("routing buffer and elementType must not be null");
        }
        if (layers <= 0 || topK <= 0) {
            throw new IllegalArgumentException("routing layers and topK must be positive, were " + layers + " and " + topK);
        }
    }

    /** Bytes the buffer must hold for {@code tokens} tokens. */
    public long bytesFor(int tokens) {
        return (long) tokens * layers * topK * elementType.bytes();
    }

    /** How many tokens fit in the buffer. */
    public long capacityTokens() {
        return buffer.byteSize() / ((long) layers * topK * elementType.bytes());
    }
}
