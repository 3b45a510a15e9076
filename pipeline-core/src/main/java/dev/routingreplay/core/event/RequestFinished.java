package dev.routingreplay.core.event;

import java.util.Arrays;

/**
 * A request finished: gather the routing of its forwarded tokens, in token order (prompt, then output), from the
 * slots they were written to. The final generated token was never forwarded and has no routing, so
 * {@code slots.length} is the number of forwarded tokens. Must be emitted before the engine frees (and reuses)
 * the request's KV blocks.
 *
 * @param requestId the finished request
 * @param slots the request's KV-cache slot per position, in token order (a copy of the caller's array; do not
 *     modify the array this accessor returns)
 */
public record RequestFinished(String requestId, int[] slots) implements EngineEvent {

    /**
     * Rejects null fields and copies {@code slots}, so the engine may reuse its array once the event is emitted (the
     * pipeline reads it later, on its sink thread); slot ranges are checked by the pipeline.
     */
    public RequestFinished {
        RequestIds.check(requestId);
        if (slots == null) {
            throw new IllegalArgumentException("request " + requestId + ": slots must not be null");
        }
        slots = slots.clone();
    }

    /**
     * Builds the slot list from a block table: {@code slot(pos) = blockTable[pos / blockSize] * blockSize + pos % blockSize}.
     *
     * @throws IllegalArgumentException naming the field when blockSize is not positive, seqLen is negative or the
     *     table has too few blocks for seqLen
     */
    public static RequestFinished fromBlockTable(String requestId, int[] blockTable, int blockSize, int seqLen) {
        if (blockSize <= 0) {
            throw new IllegalArgumentException("request " + requestId + ": blockSize must be positive, was " + blockSize);
        }
        if (seqLen < 0) {
            throw new IllegalArgumentException("request " + requestId + ": seqLen must not be negative, was " + seqLen);
        }
        long needed = (seqLen + (long) blockSize - 1) / blockSize;
        if (blockTable.length < needed) {
            throw new IllegalArgumentException("request " + requestId + ": blockTable has " + blockTable.length
                    + " blocks, seqLen=" + seqLen + " with blockSize=" + blockSize + " needs " + needed);
        }
        int[] slots = new int[seqLen];
        for (int pos = 0; pos < seqLen; pos++) {
            long slot = (long) blockTable[pos / blockSize] * blockSize + pos % blockSize;
            if (slot < 0 || slot > Integer.MAX_VALUE) {
                throw new IllegalArgumentException("request " + requestId + ": blockTable[" + pos / blockSize + "]="
                        + blockTable[pos / blockSize] + " gives slot " + slot + " out of range");
            }
            slots[pos] = (int) slot;
        }
        return new RequestFinished(requestId, slots);
    }

    /** Number of positions with routing. */
    public int seqLen() {
        return slots.length;
    }

    @Override
    public String describe() {
        return "finish of request " + requestId;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof RequestFinished f && f.requestId.equals(requestId) && Arrays.equals(f.slots, slots);
    }

    @Override
    public int hashCode() {
        return requestId.hashCode() * 31 + Arrays.hashCode(slots);
    }

    @Override
    public String toString() {
        return "RequestFinished[" + requestId + ", seqLen=" + slots.length + "]";
    }
}
