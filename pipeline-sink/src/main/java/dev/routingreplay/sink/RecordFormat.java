package dev.routingreplay.sink;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.zip.CRC32C;
import net.openhft.chronicle.bytes.Bytes;

/**
 * Byte layouts of the store's excerpts (all little endian; see docs/storage.md), and the checksum every excerpt ends
 * with.
 *
 * <pre>
 * journal (one excerpt per event, append-only, the source of truth):
 *   STEP   u8 1, i64 stepId, i32 tokens, i32 slots[tokens], rows[tokens * rowBytes]
 *   FINISH u8 2, i32 idBytes, utf8 requestId, i32 seqLen, i64 requestIndex
 *   ABORT  u8 3, i32 idBytes, utf8 requestId
 *   MOVE   u8 4, i32 n, i32 src[n], i32 dst[n]
 *   CLEAR  u8 5, i64 round (the store's round after the clear), i64 engineRound
 *   (a STEP's slot word below -1 is a dropped row: slot = word &amp; 0x7FFFFFFF, recorded as missing; RingSlotLayout)
 * requests (one excerpt per finished request, self-describing), version 5 (store format 3, ids with no sentinel):
 *   i32 MAGIC, u8 5, i32 idBytes, utf8 requestId, i64 round, i64 ordinal, i32 seqLen, i32 moeLayers, i32 topK,
 *   i32 numExperts, u8 dtypeBytes, i32 missingRows, then only when missingRows &gt; 0: u64 missing[(seqLen + 63) / 64]
 *   (bit p % 64 of word p / 64: position p is missing) and u8 reason[missingRows] (the MissingReason code of each
 *   missing row, in position order); i32 rowsCrc32c, rows[seqLen * moeLayers * topK * dtypeBytes]
 *   (dtype: the smallest that holds numExperts ids; a missing row's bytes are zero)
 * version 4 (still read): version 5 without the reasons; its missing rows read as invalid-id (the pack dropped them)
 * version 3 (still read): i32 MAGIC, u8 3, ..., u8 dtypeBytes, i32 rowsCrc32c, rows: no missingRows and no bitmap,
 *   ids in the legacy dtype (room for a sentinel: uint16 for 256 experts); a row holding the sentinel reads as missing
 * version 2 (still read): version 3 without ordinal and rowsCrc32c.
 * every excerpt then ends with i32 crc32c of all its bytes before it.
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
    /** The request record version this build writes: ids with no sentinel, the record's missing rows and their reasons. */
    static final byte REQUEST_VERSION = 5;
    /** The request record version before {@link #REQUEST_VERSION}: missing rows without reasons; still read. */
    static final byte REQUEST_VERSION_4 = 4;
    /** The request record version before {@link #REQUEST_VERSION_4}: ordinal and rows checksum, sentinel ids; still read. */
    static final byte REQUEST_VERSION_3 = 3;
    /** The request record version before {@link #REQUEST_VERSION_3}: no ordinal, no rows checksum; still read. */
    static final byte REQUEST_VERSION_2 = 2;
    /** Bytes of the trailing checksum. */
    static final int CRC_BYTES = 4;

    private RecordFormat() {
    }

    /** Whether this build reads request records of {@code version}. */
    static boolean readsRequestVersion(int version) {
        return version >= REQUEST_VERSION_2 && version <= REQUEST_VERSION;
    }

    /**
     * Writes {@code s} as UTF-8 into {@code out} at its position (no allocation).
     *
     * @return the number of bytes written
     */
    static int putUtf8(ByteBuffer out, String s) {
        int start = out.position();
        for (int i = 0; i < s.length(); i++) {
            int c = s.charAt(i);
            if (Character.isHighSurrogate((char) c) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1))) {
                c = Character.toCodePoint((char) c, s.charAt(++i));
            } else if (Character.isSurrogate((char) c)) {
                c = '?';
            }
            if (c < 0x80) {
                out.put((byte) c);
            } else if (c < 0x800) {
                out.put((byte) (0xC0 | c >> 6)).put((byte) (0x80 | c & 0x3F));
            } else if (c < 0x10000) {
                out.put((byte) (0xE0 | c >> 12)).put((byte) (0x80 | c >> 6 & 0x3F)).put((byte) (0x80 | c & 0x3F));
            } else {
                out.put((byte) (0xF0 | c >> 18)).put((byte) (0x80 | c >> 12 & 0x3F)).put((byte) (0x80 | c >> 6 & 0x3F))
                        .put((byte) (0x80 | c & 0x3F));
            }
        }
        return out.position() - start;
    }

    /** The most UTF-8 bytes {@code s} can take. */
    static int maxUtf8(String s) {
        return s.length() * 3;
    }

    /** Reads an {@code i32 length, utf8 bytes} string; throws naming the length when it does not fit. */
    static String getUtf8(ByteBuffer in) {
        int n = in.getInt();
        if (n < 0 || n > in.remaining()) {
            throw new IllegalArgumentException("string of " + n + " bytes with " + in.remaining() + " bytes left");
        }
        String s = new String(in.array(), in.arrayOffset() + in.position(), n, java.nio.charset.StandardCharsets.UTF_8);
        in.position(in.position() + n);
        return s;
    }

    /**
     * Reads the whole excerpt {@code in} (from its read position to its limit), checks its trailing checksum and
     * returns its bytes before the checksum as a little-endian buffer over {@code scratch} or, when that is too
     * small, a new array (never a view of the mapped file).
     *
     * @param what "journal record" or "request record", for the message
     * @throws StoreException naming the queue, {@code what} and the index (hex) when the excerpt is shorter than a
     *     checksum or its checksum does not match: the bytes are never returned
     */
    static ByteBuffer readChecked(Bytes<?> in, Path queue, String what, long index, byte[] scratch) {
        long length = in.readRemaining();
        if (length < CRC_BYTES || length > Integer.MAX_VALUE - 8) {
            throw new StoreException(queue, "corrupt " + what + " at index " + Long.toHexString(index) + ": " + length + " bytes");
        }
        int n = (int) length;
        byte[] all = scratch != null && scratch.length >= n ? scratch : new byte[n];
        in.read(all, 0, n);
        CRC32C crc = new CRC32C();
        crc.update(all, 0, n - CRC_BYTES);
        ByteBuffer buffer = ByteBuffer.wrap(all, 0, n).order(ByteOrder.LITTLE_ENDIAN);
        int stored = buffer.getInt(n - CRC_BYTES);
        if ((int) crc.getValue() != stored) {
            throw new StoreException(queue, "corrupt " + what + " at index " + Long.toHexString(index) + ": checksum 0x"
                    + Integer.toHexString((int) crc.getValue()) + " of its " + (n - CRC_BYTES) + " bytes, stored 0x"
                    + Integer.toHexString(stored));
        }
        buffer.limit(n - CRC_BYTES);
        return buffer;
    }
}
