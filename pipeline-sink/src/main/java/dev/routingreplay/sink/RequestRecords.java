package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.sink.RequestRouting;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import net.openhft.chronicle.bytes.Bytes;

/**
 * Reads the self-describing, checksummed request records of the request queue (the writer is the sink's finish):
 * version 3 (this build writes it: with the record's ordinal and the CRC32C of its rows) and version 2 (before: without
 * both), see {@link RecordFormat}.
 */
final class RequestRecords {
    /** Bytes of a version 3 header after the id: round, ordinal, seqLen, moeLayers, topK, numExperts, dtype, rowsCrc. */
    private static final int V3_TAIL = 8 + 8 + 4 * 4 + 1 + 4;
    /** Bytes of the fixed header start: magic, version, idBytes. */
    private static final int START = 4 + 1 + 4;

    private RequestRecords() {
    }

    /**
     * A record's header.
     *
     * @param version the record's format version (2 or 3)
     * @param ordinal the record's ordinal as written (0, 1, 2, ... in write order), or -1 for a version 2 record
     * @param rowsCrc the CRC32C of the record's rows as written (unsigned), or -1 for a version 2 record
     */
    record Header(String requestId, long round, RoutingShape shape, int seqLen, int version, long ordinal, long rowsCrc) {
        /** Whether the record carries the checksum of its rows (version 3). */
        boolean hasRowsCrc() {
            return rowsCrc >= 0;
        }
    }

    /**
     * Writes a version 3 record's header into {@code out} (little endian) at its position, the rows' checksum
     * {@code rowsCrc} included.
     */
    static void putHeader(ByteBuffer out, String requestId, long round, long ordinal, RoutingShape shape, int seqLen, int rowsCrc) {
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
        out.putInt(rowsCrc);
    }

    /** Header bytes (version 3) for an id of {@code idBytes} UTF-8 bytes at most. */
    static int maxHeaderBytes(int idBytes) {
        return START + idBytes + V3_TAIL;
    }

    /**
     * Checks a record's checksum and reads its header; the returned buffer is positioned at the rows and limited to
     * their end.
     *
     * @throws StoreException naming the queue and index when the record is not a valid request record
     */
    static ByteBuffer readChecked(Bytes<?> in, Path queue, long index, Header[] header) {
        ByteBuffer b = RecordFormat.readChecked(in, queue, "request record", index, null);
        try {
            int magic = b.getInt();
            if (magic != RecordFormat.REQUEST_MAGIC) {
                throw new StoreException(queue, "corrupt request record at index " + Long.toHexString(index) + ": bad magic 0x"
                        + Integer.toHexString(magic));
            }
            byte version = b.get();
            if (version != RecordFormat.REQUEST_VERSION && version != RecordFormat.REQUEST_VERSION_2) {
                throw new StoreException(queue, "request record at index " + Long.toHexString(index) + " has version " + version
                        + ", this build reads " + RecordFormat.REQUEST_VERSION_2 + " and " + RecordFormat.REQUEST_VERSION);
            }
            String id = RecordFormat.getUtf8(b);
            long round = b.getLong();
            long ordinal = version == RecordFormat.REQUEST_VERSION ? b.getLong() : -1;
            int seqLen = b.getInt();
            RoutingShape shape = new RoutingShape(b.getInt(), b.getInt(), b.getInt());
            int dtypeBytes = b.get();
            long rowsCrc = version == RecordFormat.REQUEST_VERSION ? b.getInt() & 0xFFFFFFFFL : -1;
            if (dtypeBytes != shape.dtype().bytes() || seqLen < 0 || b.remaining() != (long) seqLen * shape.rowBytes()) {
                throw new StoreException(queue, "corrupt request record at index " + Long.toHexString(index) + " (" + id + "): "
                        + b.remaining() + " bytes of rows for seqLen=" + seqLen + " of " + shape.describe());
            }
            header[0] = new Header(id, round, shape, seqLen, version, ordinal, rowsCrc);
            return b;
        } catch (StoreException e) {
            throw e;
        } catch (RuntimeException e) {
            throw new StoreException(queue, "corrupt request record at index " + Long.toHexString(index), e);
        }
    }

    /** Reads and checks a whole record into a {@link RequestRouting} (rows on the heap, never a view of the file). */
    static RequestRouting read(Bytes<?> in, Path queue, long index, Header[] header) {
        ByteBuffer b = readChecked(in, queue, index, header);
        Header h = header[0];
        return new RequestRouting(h.requestId(), h.shape(), h.seqLen(), b.slice().order(ByteOrder.LITTLE_ENDIAN));
    }

    /**
     * What {@link #peek} reads of a record without its rows: enough to index it. Reused from record to record (no
     * allocation per record); not checked against the record's checksum (the record is checked when it is read).
     */
    static final class Peek {
        /** The record's version (2 or 3), or 0 when the bytes are not a request record's. */
        int version;
        /** The stored ordinal (version 3), or -1. */
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
        if (magic != RecordFormat.REQUEST_MAGIC || (version != RecordFormat.REQUEST_VERSION && version != RecordFormat.REQUEST_VERSION_2)
                || idBytes < 0 || idBytes > remaining - START - 8 - 8) {
            return false;
        }
        if (s.length < idBytes + 16) {
            out.scratch = s = new byte[Math.max(idBytes + 16, s.length * 2)];
        }
        in.read(s, 0, idBytes);
        out.idHash = idHash(s, 0, idBytes);
        if (version == RecordFormat.REQUEST_VERSION) {
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
