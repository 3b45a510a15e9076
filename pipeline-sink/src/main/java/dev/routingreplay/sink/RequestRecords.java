package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingDtype;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.sink.MissingReason;
import dev.routingreplay.core.sink.RequestRouting;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import net.openhft.chronicle.bytes.Bytes;

/**
 * Reads the self-describing, checksummed request records of the request queue (the writer is the sink's finish):
 * version 5 (this build writes it: ids in the smallest dtype that holds the experts, no sentinel, the record's missing
 * rows as a count and, when some row is missing, a bitmap and each missing row's {@link MissingReason}), version 4 (no
 * reasons: its missing rows read as {@link MissingReason#INVALID_ID}), version 3 (ordinal and rows checksum, sentinel ids) and
 * version 2 (neither), see {@link RecordFormat}. A version 2 or 3 record's ids are in the legacy dtype
 * ({@link RoutingDtype#legacyForExperts}); a row of it that holds the sentinel anywhere is a missing row.
 */
final class RequestRecords {
    /** Bytes of a version 4 or 5 header after the id: round, ordinal, seqLen, moeLayers, topK, numExperts, dtype, missingRows, rowsCrc. */
    private static final int V4_TAIL = 8 + 8 + 4 * 4 + 1 + 4 + 4;
    /** Bytes of the fixed header start: magic, version, idBytes. */
    private static final int START = 4 + 1 + 4;

    private RequestRecords() {
    }

    /**
     * A record's header.
     *
     * @param version the record's format version (2 to 5)
     * @param ordinal the record's ordinal as written (0, 1, 2, ... in write order), or -1 for a version 2 record
     * @param rowsCrc the CRC32C of the record's rows as written (unsigned), or -1 for a version 2 record
     * @param dtype the dtype the record's ids are stored in
     * @param missingRows the record's missing rows as written (version 4 and later), or -1 until a version 2 or 3 record's rows
     *     were scanned for the sentinel ({@link #read} gives the counted header)
     */
    record Header(String requestId, long round, RoutingShape shape, int seqLen, int version, long ordinal, long rowsCrc,
            RoutingDtype dtype, int missingRows) {
        /** Whether the record carries the checksum of its rows (version 3 and later). */
        boolean hasRowsCrc() {
            return rowsCrc >= 0;
        }
    }

    /**
     * Writes a version 5 record's header into {@code out} (little endian) at its position: the missing-row count and,
     * when it is not 0, the first {@code (seqLen + 63) / 64} words of {@code missingRows} and the reason code
     * {@code reasons[p]} of each missing position {@code p}, then the rows' checksum {@code rowsCrc}.
     */
    static void putHeader(ByteBuffer out, String requestId, long round, long ordinal, RoutingShape shape, int seqLen, int missingCount,
            long[] missingRows, byte[] reasons, int rowsCrc) {
        out.putInt(RecordFormat.REQUEST_MAGIC);
        out.put(RecordFormat.REQUEST_VERSION);
        int lengthAt = out.position();
        out.putInt(0);
        out.putInt(lengthAt, RecordFormat.putUtf8(out, requestId));
        out.putLong(round);
        out.putLong(ordinal);
        out.putInt(seqLen);
        out.putInt(shape.moeLayers());
        out.putInt(shape.topK());
        out.putInt(shape.numExperts());
        out.put((byte) shape.dtype().bytes());
        out.putInt(missingCount);
        if (missingCount > 0) {
            for (int w = 0, n = RequestRouting.bitmapWords(seqLen); w < n; w++) {
                out.putLong(missingRows[w]);
            }
            for (int w = 0, n = RequestRouting.bitmapWords(seqLen); w < n; w++) {
                for (long bits = missingRows[w]; bits != 0; bits &= bits - 1) {
                    out.put(reasons[(w << 6) + Long.numberOfTrailingZeros(bits)]);
                }
            }
        }
        out.putInt(rowsCrc);
    }

    /** Header bytes (version 5) for an id of {@code idBytes} UTF-8 bytes at most and {@code seqLen} rows, bitmap and reasons included. */
    static int maxHeaderBytes(int idBytes, int seqLen) {
        return START + idBytes + V4_TAIL + 8 * RequestRouting.bitmapWords(seqLen) + seqLen;
    }

    /**
     * Checks a record's checksum and reads its header; the returned buffer is positioned at the rows and limited to
     * their end; {@code missing[0]} gets a version 4 or 5 record's missing-row bitmap, or null (none missing, or a
     * version 2 or 3 record: see {@link #read}), and {@code reasons[0]} the reason code of each position (0 for a
     * recorded one; a version 4 record's missing rows get {@link MissingReason#INVALID_ID}), or null with the bitmap.
     *
     * @throws StoreException naming the queue and index when the record is not a valid request record
     */
    static ByteBuffer readChecked(Bytes<?> in, Path queue, long index, Header[] header, long[][] missing, byte[][] reasons) {
        ByteBuffer b = RecordFormat.readChecked(in, queue, "request record", index, null);
        try {
            int magic = b.getInt();
            if (magic != RecordFormat.REQUEST_MAGIC) {
                throw new StoreException(queue, "corrupt request record at index " + Long.toHexString(index) + ": bad magic 0x"
                        + Integer.toHexString(magic));
            }
            byte version = b.get();
            if (!RecordFormat.readsRequestVersion(version)) {
                throw new StoreException(queue, "request record at index " + Long.toHexString(index) + " has version " + version
                        + ", this build reads " + RecordFormat.REQUEST_VERSION_2 + " to " + RecordFormat.REQUEST_VERSION);
            }
            String id = RecordFormat.getUtf8(b);
            long round = b.getLong();
            long ordinal = version >= RecordFormat.REQUEST_VERSION_3 ? b.getLong() : -1;
            int seqLen = b.getInt();
            RoutingShape shape = new RoutingShape(b.getInt(), b.getInt(), b.getInt());
            int dtypeBytes = b.get();
            boolean current = version >= RecordFormat.REQUEST_VERSION_4;
            RoutingDtype dtype = current ? shape.dtype() : RoutingDtype.legacyForExperts(shape.numExperts());
            int missingCount = -1;
            long[] bits = null;
            byte[] codes = null;
            if (current) {
                missingCount = b.getInt();
                if (missingCount < 0 || missingCount > seqLen || seqLen < 0) {
                    throw new StoreException(queue, "corrupt request record at index " + Long.toHexString(index) + " (" + id + "): "
                            + missingCount + " missing rows of seqLen=" + seqLen);
                }
                if (missingCount > 0) {
                    bits = new long[RequestRouting.bitmapWords(seqLen)];
                    int counted = 0;
                    for (int w = 0; w < bits.length; w++) {
                        bits[w] = b.getLong();
                        counted += Long.bitCount(bits[w]);
                    }
                    if (counted != missingCount || (seqLen & 63) != 0 && bits[bits.length - 1] >>> (seqLen & 63) != 0) {
                        throw new StoreException(queue, "corrupt request record at index " + Long.toHexString(index) + " (" + id
                                + "): its missing-row bitmap marks " + counted + " rows (some past seqLen=" + seqLen + "?), its count says "
                                + missingCount);
                    }
                    codes = new byte[seqLen];
                    for (int w = 0; w < bits.length; w++) {
                        for (long set = bits[w]; set != 0; set &= set - 1) {
                            int p = (w << 6) + Long.numberOfTrailingZeros(set);
                            codes[p] = version == RecordFormat.REQUEST_VERSION_4 ? MissingReason.INVALID_ID.code() : reasonCode(b.get(), queue, index, id, p);
                        }
                    }
                }
            }
            long rowsCrc = version >= RecordFormat.REQUEST_VERSION_3 ? b.getInt() & 0xFFFFFFFFL : -1;
            if (dtypeBytes != dtype.bytes() || seqLen < 0 || b.remaining() != (long) seqLen * shape.idsPerRow() * dtype.bytes()) {
                throw new StoreException(queue, "corrupt request record at index " + Long.toHexString(index) + " (" + id + "): "
                        + b.remaining() + " bytes of rows for seqLen=" + seqLen + " of " + shape.describe() + " in " + dtypeBytes
                        + "-byte ids (version " + version + " stores " + dtype.numpyName() + ")");
            }
            header[0] = new Header(id, round, shape, seqLen, version, ordinal, rowsCrc, dtype, missingCount);
            missing[0] = bits;
            reasons[0] = codes;
            return b;
        } catch (StoreException e) {
            throw e;
        } catch (RuntimeException e) {
            throw new StoreException(queue, "corrupt request record at index " + Long.toHexString(index), e);
        }
    }

    private static byte reasonCode(byte code, Path queue, long index, String id, int position) {
        try {
            return MissingReason.ofCode(code).code();
        } catch (IllegalArgumentException e) {
            throw new StoreException(queue, "corrupt request record at index " + Long.toHexString(index) + " (" + id + "): position "
                    + position + " has missing-row reason code " + code);
        }
    }

    /** As {@link #readChecked(Bytes, Path, long, Header[], long[][], byte[][])}, without the missing rows. */
    static ByteBuffer readChecked(Bytes<?> in, Path queue, long index, Header[] header) {
        return readChecked(in, queue, index, header, new long[1][], new byte[1][]);
    }

    /**
     * Reads and checks a whole record into a {@link RequestRouting} (rows on the heap, never a view of the file), its
     * missing rows marked; {@code header[0]} gets the header with the missing-row count (for a version 2 or 3 record:
     * the rows that hold the legacy sentinel anywhere).
     */
    static RequestRouting read(Bytes<?> in, Path queue, long index, Header[] header) {
        long[][] missing = new long[1][];
        byte[][] reasons = new byte[1][];
        ByteBuffer b = readChecked(in, queue, index, header, missing, reasons);
        Header h = header[0];
        ByteBuffer rows = b.slice().order(ByteOrder.LITTLE_ENDIAN);
        long[] bits = missing[0];
        if (h.version() < RecordFormat.REQUEST_VERSION_4) {
            bits = legacyMissingRows(rows, h.shape(), h.dtype(), h.seqLen());
            int count = 0;
            for (long w : bits) {
                count += Long.bitCount(w);
            }
            header[0] = h = new Header(h.requestId(), h.round(), h.shape(), h.seqLen(), h.version(), h.ordinal(), h.rowsCrc(), h.dtype(), count);
        }
        return new RequestRouting(h.requestId(), h.shape(), h.dtype(), h.seqLen(), rows, bits, reasons[0]);
    }

    /** The rows of a version 2 or 3 record that hold the legacy sentinel in any id (bitmap, one bit per position). */
    private static long[] legacyMissingRows(ByteBuffer rows, RoutingShape shape, RoutingDtype dtype, int seqLen) {
        long[] bits = new long[RequestRouting.bitmapWords(seqLen)];
        int sentinel = dtype.legacySentinel();
        int perRow = shape.idsPerRow();
        int idBytes = dtype.bytes();
        for (int p = 0; p < seqLen; p++) {
            int base = p * perRow * idBytes;
            for (int i = 0; i < perRow; i++) {
                if (dtype.read(rows, base + i * idBytes) == sentinel) {
                    bits[p >>> 6] |= 1L << p;
                    break;
                }
            }
        }
        return bits;
    }

    /**
     * What {@link #peek} reads of a record without its rows: enough to index it. Reused from record to record (no
     * allocation per record); not checked against the record's checksum (the record is checked when it is read).
     */
    static final class Peek {
        /** The record's version (2 to 5), or 0 when the bytes are not a request record's. */
        int version;
        /** The stored ordinal (version 3 and later), or -1. */
        long ordinal;
        /** {@link #idHash} of the record's id bytes. */
        long idHash;
        private byte[] scratch = new byte[64];
    }

    /**
     * Reads the start of the record {@code in} (its read position at the record's first byte) into {@code out}: the
     * version, the stored ordinal and the hash of the id, touching only the header's bytes.
     *
     * @return false when the bytes do not start like a request record (too short, bad magic, version or id length)
     */
    static boolean peek(Bytes<?> in, Peek out) {
        out.version = 0;
        out.ordinal = -1;
        long remaining = in.readRemaining();
        if (remaining < START + RecordFormat.CRC_BYTES) {
            return false;
        }
        byte[] s = out.scratch;
        in.read(s, 0, START);
        ByteBuffer b = ByteBuffer.wrap(s).order(ByteOrder.LITTLE_ENDIAN);
        int magic = b.getInt(0);
        byte version = b.get(4);
        int idBytes = b.getInt(5);
        if (magic != RecordFormat.REQUEST_MAGIC || !RecordFormat.readsRequestVersion(version)
                || idBytes < 0 || idBytes > remaining - START - 8 - 8) {
            return false;
        }
        if (s.length < idBytes + 16) {
            out.scratch = s = new byte[Math.max(idBytes + 16, s.length * 2)];
        }
        in.read(s, 0, idBytes);
        out.idHash = idHash(s, 0, idBytes);
        if (version >= RecordFormat.REQUEST_VERSION_3) {
            in.read(s, 0, 16);
            out.ordinal = ByteBuffer.wrap(s, 0, 16).order(ByteOrder.LITTLE_ENDIAN).getLong(8);
        }
        out.version = version;
        return true;
    }

    /** A 64-bit hash of an id's UTF-8 bytes (FNV-1a, then murmur3's finaliser so both halves are well mixed). */
    static long idHash(byte[] bytes, int offset, int length) {
        long h = 0xcbf29ce484222325L;
        for (int i = offset; i < offset + length; i++) {
            h ^= bytes[i] & 0xFF;
            h *= 0x100000001b3L;
        }
        h ^= h >>> 33;
        h *= 0xff51afd7ed558ccdL;
        h ^= h >>> 33;
        h *= 0xc4ceb9fe1a85ec53L;
        h ^= h >>> 33;
        return h;
    }
}
