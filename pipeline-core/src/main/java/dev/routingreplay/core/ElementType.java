package dev.routingreplay.core;

/** Element type of an engine-side device buffer: routing ids or slot mappings, as the engine produced them. */
public enum ElementType {
    /** 32-bit signed integers. */
    INT32(4),
    /** 64-bit signed integers (what PyTorch's {@code topk} and most slot mappings give). */
    INT64(8);

    private final int bytes;

    ElementType(int bytes) {
        this.bytes = bytes;
    }

    /** Bytes per element. */
    public int bytes() {
        return bytes;
    }
}
