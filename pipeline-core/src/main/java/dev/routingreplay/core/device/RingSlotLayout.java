package dev.routingreplay.core.device;

import dev.routingreplay.core.RoutingShape;

/**
 * The byte layout of one ring slot, the same in device staging memory and in pinned host memory, so one copy
 * per region moves a step off the device. Native byte order.
 *
 * <pre>
 * [0, 64)                 pack status: invalid ids and invalid slots the pack found (see the offsets below)
 * [64, 64 + 4*maxTokens)  slot word of each token, int32: the slot (>= 0); -1 = padding; slot | 0x80000000
 *                         (below -1) = the row was dropped by the pack (an expert id out of range): the slot's row
 *                         is recorded as missing
 * [rowsOffset, ...)       rows, token-major, [tokens, layers, topK] in the compact dtype
 * </pre>
 */
public final class RingSlotLayout {
    /** Bytes of the status header. */
    public static final int STATUS_BYTES = 64;
    /** int32: how many ids were outside {@code [0, numExperts)} (tokens with slot -1 are not checked). */
    public static final int INVALID_ID_COUNT = 0;
    /** int32: token index of one invalid id. */
    public static final int INVALID_ID_TOKEN = 4;
    /** int32: index {@code layer * topK + k} of that id within its row. */
    public static final int INVALID_ID_INDEX = 8;
    /** int64: the invalid id's value as the engine wrote it. */
    public static final int INVALID_ID_VALUE = 16;
    /** int32: how many slots were outside {@code [-1, slotCapacity)}. */
    public static final int INVALID_SLOT_COUNT = 24;
    /** int32: token index of one invalid slot. */
    public static final int INVALID_SLOT_TOKEN = 28;
    /** int64: the invalid slot's value as the engine wrote it. */
    public static final int INVALID_SLOT_VALUE = 32;
    /** The bit the pack sets in a token's slot word when it dropped the row (see {@link #isDropped}). */
    public static final int DROPPED_ROW = 0x80000000;
    /** Offset of the int32 slots. */
    public static final int SLOTS_OFFSET = STATUS_BYTES;
    private static final int ROWS_ALIGNMENT = 256;

    private final int rowBytes;
    private final int maxTokens;
    private final int rowsOffset;
    private final int totalBytes;

    /** The layout for {@code maxTokens} tokens of {@code shape}. */
    public RingSlotLayout(RoutingShape shape, int maxTokens) {
        this.rowBytes = shape.rowBytes();
        this.maxTokens = maxTokens;
        this.rowsOffset = align(SLOTS_OFFSET + 4L * maxTokens);
        this.totalBytes = Math.toIntExact(bytesFor(shape, maxTokens));
    }

    /** Whether a slot word marks a dropped row (a value below -1); its slot is {@link #droppedSlot}. */
    public static boolean isDropped(int slotWord) {
        return slotWord < -1;
    }

    /** The slot of a dropped row's slot word ({@code slotWord & 0x7FFFFFFF}). */
    public static int droppedSlot(int slotWord) {
        return slotWord & ~DROPPED_ROW;
    }

    static long bytesFor(RoutingShape shape, int maxTokens) {
        return align(SLOTS_OFFSET + 4L * maxTokens) + (long) maxTokens * shape.rowBytes();
    }

    private static int align(long offset) {
        return Math.toIntExact((offset + ROWS_ALIGNMENT - 1) / ROWS_ALIGNMENT * ROWS_ALIGNMENT);
    }

    /** Bytes of one token's row. */
    public int rowBytes() {
        return rowBytes;
    }

    /** Tokens a slot holds. */
    public int maxTokens() {
        return maxTokens;
    }

    /** Offset of the first row. */
    public int rowsOffset() {
        return rowsOffset;
    }

    /** Offset of token {@code token}'s row. */
    public int rowOffset(int token) {
        return rowsOffset + token * rowBytes;
    }

    /** Offset of token {@code token}'s slot. */
    public int slotOffset(int token) {
        return SLOTS_OFFSET + 4 * token;
    }

    /** Bytes of status plus slots that a step of {@code tokens} tokens uses (the first copy region). */
    public int headerBytes(int tokens) {
        return SLOTS_OFFSET + 4 * tokens;
    }

    /** Bytes of rows that a step of {@code tokens} tokens uses (the second copy region). */
    public int rowBytesFor(int tokens) {
        return tokens * rowBytes;
    }

    /** Size of one ring slot in bytes. */
    public int totalBytes() {
        return totalBytes;
    }
}
