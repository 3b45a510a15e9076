package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.sink.RequestRouting;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import net.openhft.chronicle.bytes.Bytes;

/** Reads and writes the self-describing request records of the request queue. */
final class RequestRecords {
    private RequestRecords() {
    }

    /** A record's header, read without its rows. */
    record Header(String requestId, long round, RoutingShape shape, int seqLen) {
    }

    static void write(Bytes<?> out, String requestId, long round, RoutingShape shape, int seqLen, byte[] rows, int rowBytesTotal) {
        out.writeInt(RecordFormat.REQUEST_MAGIC);
        out.writeByte(RecordFormat.REQUEST_VERSION);
        out.writeUtf8(requestId);
        out.writeLong(round);
        out.writeInt(seqLen);
        out.writeInt(shape.moeLayers());
        out.writeInt(shape.topK());
        out.writeInt(shape.numExperts());
        out.writeByte((byte) shape.dtype().bytes());
        out.write(rows, 0, rowBytesTotal);
    }

    /**
     * Reads a header and leaves {@code in} at the rows.
     *
     * @throws StoreException naming the queue and index when the record is not a valid request record
     */
    static Header readHeader(Bytes<?> in, Path queue, long index) {
        try {
            int magic = in.readInt();
            if (magic != RecordFormat.REQUEST_MAGIC) {
                throw new StoreException(queue, "corrupt request record at index " + Long.toHexString(index) + ": bad magic 0x"
                        + Integer.toHexString(magic));
            }
            byte version = in.readByte();
            if (version != RecordFormat.REQUEST_VERSION) {
                throw new StoreException(queue, "request record at index " + Long.toHexString(index) + " has version " + version
                        + ", this build reads " + RecordFormat.REQUEST_VERSION);
            }
            String id = in.readUtf8();
            long round = in.readLong();
            int seqLen = in.readInt();
            RoutingShape shape = new RoutingShape(in.readInt(), in.readInt(), in.readInt());
            int dtypeBytes = in.readByte();
            if (dtypeBytes != shape.dtype().bytes() || id == null || seqLen < 0
                    || in.readRemaining() != (long) seqLen * shape.rowBytes()) {
                throw new StoreException(queue, "corrupt request record at index " + Long.toHexString(index) + " (" + id + "): "
                        + in.readRemaining() + " bytes of rows for seqLen=" + seqLen + " of " + shape.describe());
            }
            return new Header(id, round, shape, seqLen);
        } catch (StoreException e) {
            throw e;
        } catch (RuntimeException e) {
            throw new StoreException(queue, "corrupt request record at index " + Long.toHexString(index), e);
        }
    }

    /** Reads a whole record into a {@link RequestRouting} (rows copied to the heap). */
    static RequestRouting read(Bytes<?> in, Path queue, long index) {
        Header h = readHeader(in, queue, index);
        byte[] rows = new byte[h.seqLen() * h.shape().rowBytes()];
        in.read(rows);
        return new RequestRouting(h.requestId(), h.shape(), h.seqLen(), ByteBuffer.wrap(rows).order(ByteOrder.LITTLE_ENDIAN));
    }
}
