package dev.routingreplay.sink;

/**
 * Byte layouts of the store's excerpts (all little endian; see docs/storage.md).
 *
 * <pre>
 * journal (one excerpt per event, append-only, the source of truth):
 *   STEP   u8 1, i64 stepId, i32 tokens, i32 slots[tokens], rows[tokens * rowBytes]
 *   FINISH u8 2, utf8 requestId, i32 seqLen, i64 requestIndex
 *   ABORT  u8 3, utf8 requestId
 *   MOVE   u8 4, i32 n, i32 src[n], i32 dst[n]
 *   CLEAR  u8 5, i64 round (the store's round after the clear), i64 engineRound
 * requests (one excerpt per finished request, self-describing):
 *   i32 MAGIC, u8 VERSION, utf8 requestId, i64 round, i32 seqLen, i32 moeLayers, i32 topK, i32 numExperts,
 *   u8 dtypeBytes, rows[seqLen * moeLayers * topK * dtypeBytes]
 * </pre>
 */
final class RecordFormat {
    static final byte STEP = 1;
    static final byte FINISH = 2;
    static final byte ABORT = 3;
    static final byte MOVE = 4;
    static final byte CLEAR = 5;
    /** "R3RQ" little endian. */
    static final int REQUEST_MAGIC = 0x51523352;
    static final byte REQUEST_VERSION = 1;

    private RecordFormat() {
    }
}
