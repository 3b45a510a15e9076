package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.sink.SlotStore;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.zip.CRC32C;
import net.openhft.chronicle.bytes.Bytes;
import net.openhft.chronicle.queue.ExcerptAppender;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueue;
import net.openhft.chronicle.wire.DocumentContext;

/**
 * Writes a finished request's record to the request queue: gathers its rows from the slot index in token order into
 * a reusable heap buffer (its missing rows into a reusable bitmap and reason table), then appends the self-describing
 * record ({@link RequestRecords}, version 5: header with the record's ordinal, its missing-row count and, when some row
 * is missing, the bitmap and each missing row's reason, and the CRC32C of its rows; rows; CRC32C of the excerpt, which covers the bitmap) inside a Chronicle document context, its
 * bytes preallocated first; a failed append is rolled back and thrown as a {@link StoreException} naming the queue file.
 *
 * <p>The rows are checksummed once: the excerpt's checksum is combined from the header's and the rows'
 * ({@link Crc32c#combine}). Ordinals count the records written to the store, 0, 1, 2, ...; a rolled-back write takes
 * none. Allocates nothing per record in steady state (the buffers grow to the longest request and stay).
 *
 * <p>Threading: the sink thread only ({@link #claim} moves the appender to a new sink thread).
 */
final class RequestWriter {
    private final SingleChronicleQueue requests;
    private final Path dir;
    private final WriteSpace space;
    private final SlotStore store;
    private final RoutingShape shape;
    private final int rowBytes;
    private final HeaderBuffer header = new HeaderBuffer();
    private final CRC32C crc = new CRC32C();
    private byte[] gatherBytes = new byte[0];
    private ByteBuffer gatherBuffer = ByteBuffer.wrap(gatherBytes);
    private long[] missingRows = new long[0];
    private byte[] reasons = new byte[0];
    private ExcerptAppender appender;
    private long lastIndex;
    private long lastOrdinal;

    RequestWriter(SingleChronicleQueue requests, Path dir, WriteSpace space, SlotStore store, RoutingShape shape, long lastIndex,
            long lastOrdinal) {
        this.requests = requests;
        this.dir = dir;
        this.space = space;
        this.store = store;
        this.shape = shape;
        this.rowBytes = shape.rowBytes();
        this.lastIndex = lastIndex;
        this.lastOrdinal = lastOrdinal;
    }

    /** Bytes the record of request {@code id} of {@code seqLen} tokens takes at most, checksum included. */
    long maxBytes(String id, int seqLen) {
        return RequestRecords.maxHeaderBytes(RecordFormat.maxUtf8(id), seqLen) + (long) seqLen * rowBytes + RecordFormat.CRC_BYTES;
    }

    /** Makes the calling thread the appender's: creates it on the first call, else resets Chronicle's thread check. */
    void claim() {
        if (appender == null) {
            appender = requests.createAppender();
        } else {
            appender.singleThreadedCheckReset();
        }
    }

    /** Whether an appender exists (a write was prepared since open). */
    boolean claimed() {
        return appender != null;
    }

    /** The cycle the appender writes. */
    int cycle() {
        return appender.cycle();
    }

    /** The index of the last record written or recovered, or -1. */
    long lastIndex() {
        return lastIndex;
    }

    /** The ordinal of the last record written or recovered, or -1. */
    long lastOrdinal() {
        return lastOrdinal;
    }

    /** Gathers and appends the record of {@code request} in {@code round}; returns its index. */
    long write(RequestFinished request, long round, ChronicleRoutingSink.WriteProbe probe) {
        String id = request.requestId();
        int n = request.seqLen();
        int total = n * rowBytes;
        int headerMax = RequestRecords.maxHeaderBytes(RecordFormat.maxUtf8(id), n);
        if (gatherBytes.length < total) {
            gatherBytes = new byte[Math.max(total, gatherBytes.length * 2)];
            gatherBuffer = ByteBuffer.wrap(gatherBytes).order(ByteOrder.LITTLE_ENDIAN);
        }
        if (missingRows.length < RequestRouting.bitmapWords(n)) {
            missingRows = new long[Math.max(RequestRouting.bitmapWords(n), missingRows.length * 2)];
        }
        if (reasons.length < n) {
            reasons = new byte[Math.max(n, reasons.length * 2)];
        }
        int missing = store.gatherInto(request, gatherBuffer, missingRows, reasons);
        crc.reset();
        crc.update(gatherBytes, 0, total);
        int rowsCrc = (int) crc.getValue();
        long ordinal = lastOrdinal + 1;
        ByteBuffer head = header.clear(headerMax);
        RequestRecords.putHeader(head, id, round, ordinal, shape, n, missing, missingRows, reasons, rowsCrc);
        byte[] headerBytes = header.array();
        crc.reset();
        crc.update(headerBytes, 0, head.position());
        int excerptCrc = Crc32c.combine((int) crc.getValue(), rowsCrc, total);
        Preallocation prealloc = space.requests();
        try (DocumentContext dc = appender.writingDocument()) {
            try {
                Bytes<?> b = dc.wire().bytes();
                prealloc.ensure(appender.cycle(), b, head.position() + (long) total + RecordFormat.CRC_BYTES);
                b.write(headerBytes, 0, head.position());
                b.write(gatherBytes, 0, total);
                b.writeInt(excerptCrc);
                probe.beforeCommit(dir, ChronicleRoutingSink.WriteProbe.REQUEST);
            } catch (Throwable e) {
                dc.rollbackOnClose();
                throw space.failed(prealloc, e);
            }
        }
        lastIndex = appender.lastIndexAppended();
        lastOrdinal = ordinal;
        return lastIndex;
    }
}
