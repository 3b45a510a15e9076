package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;

/**
 * A stored request record's header, without its rows ({@link RoutingReplay#records}): where the record is, what it
 * holds and the writer's checksum of its rows. The record was read whole and passed its checksum when this was made.
 *
 * @param index the record's Chronicle index in the request queue
 * @param ordinal the record's ordinal (0, 1, 2, ... in write order, stable across restarts and retention), or -1 for a
 *     record written before record version 3
 * @param requestId the engine's request id
 * @param round the store round the request finished in
 * @param seqLen the stored positions
 * @param shape layers, top-k and experts of each position; its dtype is the stored one
 * @param rowsCrc32c the CRC32C of the rows in the stored dtype as the writer computed it (unsigned), or -1 for a
 *     record written before record version 3
 */
public record StoredRecord(long index, long ordinal, String requestId, long round, int seqLen, RoutingShape shape, long rowsCrc32c) {
    /** Bytes of the rows: {@code seqLen * rowBytes}. */
    public long rowsBytes() {
        return (long) seqLen * shape.rowBytes();
    }
}
