package dev.routingreplay.core.event;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.memory.DeviceBuffer;

/**
 * The engine's device buffer that maps each token of a step to its KV-cache slot ({@code -1} for padding).
 *
 * @param buffer device memory holding one slot per token
 * @param elementType int32 or int64 slots
 */
public record SlotMappingBuffer(DeviceBuffer buffer, ElementType elementType) {
    /** Checks that no field is null. */
    public SlotMappingBuffer {
        if (buffer == null || elementType == null) {
            throw new IllegalArgumentException("slot mapping buffer and elementType must not be null");
        }
    }

    /** How many tokens' slots fit in the buffer. */
    public long capacityTokens() {
        return buffer.byteSize() / elementType.bytes();
    }
}
