package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.sink.RequestRouting;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import net.openhft.chronicle.bytes.Bytes;

/** Reads the self-describing, checksummed request records of the request queue (the writer is the sink's finish). */
final class RequestRecords {
    private RequestRecords() {
    }

    /** A record's header. */
    record Header(String requestId, long round, RoutingShape shape, int seqLen) {
    }

    /**
     * Writes a record's header into {@code out} (little endian) at its position.
     */
    static void putHeader(ByteBuffer out, String requestId, long round, RoutingShape shape, int seqLen) {
        out.putInt(RecordFormat.REQUEST_MAGIC);
        out.put(RecordFormat.REQUEST_VERSION);
        int lengthAt = out.position();
        out.putInt(0);
        out.putInt(lengthAt, RecordFormat.putUtf8(out, requestId));
        out.putLong(round);
        out.putInt(seqLen);
        out.putInt(shape.moeLayers());
        out.putInt(shape.topK());
        out.putInt(shape.numExperts());
        out.put((byte) shape.dtype().bytes());
    }

    /** Header bytes for an id of {@code idBytes} UTF-8 bytes at most. */
    static int maxHeaderBytes(int idBytes) {
        return 4 + 1 + 4 + idBytes + 8 + 4 * 4 + 4 + 1;
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
            if (version != RecordFormat.REQUEST_VERSION) {
                throw new StoreException(queue, "request record at index " + Long.toHexString(index) + " has version " + version
                        + ", this build reads " + RecordFormat.REQUEST_VERSION);
            }
            String id = RecordFormat.getUtf8(b);
            long round = b.getLong();
            int seqLen = b.getInt();
            RoutingShape shape = new RoutingShape(b.getInt(), b.getInt(), b.getInt());
            int dtypeBytes = b.get();
            if (dtypeBytes != shape.dtype().bytes() || seqLen < 0 || b.remaining() != (long) seqLen * shape.rowBytes()) {
                throw new StoreException(queue, "corrupt request record at index " + Long.toHexString(index) + " (" + id + "): "
                        + b.remaining() + " bytes of rows for seqLen=" + seqLen + " of " + shape.describe());
            }
            header[0] = new Header(id, round, shape, seqLen);
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
}
