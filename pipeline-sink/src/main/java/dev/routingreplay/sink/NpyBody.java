package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingDtype;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.sink.RequestRouting;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.zip.CRC32C;
import reactor.core.publisher.Flux;

/**
 * The {@code .npy} body the server sends for one record and {@link FetchOptions}: positions {@code [start, end)},
 * layers {@code [layerFrom, layerTo)}, every k, in the asked dtype, C order, little endian. Produced in chunks of whole
 * rows (about {@value #CHUNK_BYTES} bytes) from the record's rows, so a widened or sliced body never exists whole in
 * memory; {@link #crc32c} goes over the same chunks once more (or, for a whole native record of version 3 or later,
 * combines the header's checksum with the record's stored one, without reading the rows). In a signed dtype every id
 * of a missing row is -1; a native body must not hold a missing row (the server refuses it first,
 * {@link FetchOptions#missingRowsRefusal}).
 *
 * <p>Threading: immutable; chunks may be produced on any thread.
 */
final class NpyBody {
    static final int CHUNK_BYTES = 256 * 1024;

    private final RequestRouting routing;
    private final RoutingShape shape;
    private final FetchOptions options;
    private final long storedRowsCrc;
    private final int start;
    private final int rows;
    private final int outBytes;
    private final int rowOutBytes;
    private final byte[] header;

    /**
     * The body of {@code routing} (whose rows' stored CRC32C is {@code storedRowsCrc}, or -1 when the record has none)
     * for {@code options}; {@code options.start()} must be at most {@code options.end(seqLen)}.
     */
    NpyBody(RequestRouting routing, long storedRowsCrc, FetchOptions options) {
        this.routing = routing;
        this.shape = routing.shape();
        this.options = options;
        this.storedRowsCrc = storedRowsCrc;
        this.start = options.start();
        this.rows = options.end(routing.seqLen()) - start;
        if (rows < 0) {
            throw new IllegalArgumentException("start " + start + " is past the end " + options.end(routing.seqLen()));
        }
        String descr;
        switch (options.dtype()) {
            case INT16:
                descr = "<i2";
                outBytes = 2;
                break;
            case INT32:
                descr = "<i4";
                outBytes = 4;
                break;
            case INT64:
                descr = "<i8";
                outBytes = 8;
                break;
            default:
                descr = routing.dtype().numpyDescr();
                outBytes = routing.dtype().bytes();
        }
        this.rowOutBytes = (options.layerTo() - options.layerFrom()) * shape.topK() * outBytes;
        this.header = NpyWriter.header(descr, rows, options.layerTo() - options.layerFrom(), shape.topK());
    }

    /** The {@code .npy} header. */
    byte[] header() {
        return header.clone();
    }

    /** Bytes of the whole body, header included. */
    long length() {
        return header.length + (long) rows * rowOutBytes;
    }

    /** The CRC32C of the whole body, header included. */
    int crc32c() {
        int headerCrc = Crc32c.of(header, 0, header.length);
        if (storedRowsCrc >= 0 && options.whole(shape)) {
            return Crc32c.combine(headerCrc, (int) storedRowsCrc, (long) rows * rowOutBytes);
        }
        CRC32C crc = new CRC32C();
        crc.update(header, 0, header.length);
        int perChunk = rowsPerChunk();
        byte[] scratch = new byte[Math.min(rows, perChunk) * rowOutBytes];
        for (int r = 0; r < rows; r += perChunk) {
            int n = Math.min(perChunk, rows - r);
            fill(r, n, scratch);
            crc.update(scratch, 0, n * rowOutBytes);
        }
        return (int) crc.getValue();
    }

    /** The body: the header, then the rows in chunks, each produced when it is requested. */
    Flux<byte[]> chunks() {
        int perChunk = rowsPerChunk();
        Flux<byte[]> data = Flux.generate(() -> 0, (r, sink) -> {
            if (r >= rows) {
                sink.complete();
                return r;
            }
            int n = Math.min(perChunk, rows - r);
            byte[] chunk = new byte[n * rowOutBytes];
            fill(r, n, chunk);
            sink.next(chunk);
            return r + n;
        });
        return Flux.concat(Flux.just(header()), data);
    }

    private int rowsPerChunk() {
        return Math.max(1, CHUNK_BYTES / Math.max(1, rowOutBytes));
    }

    /** Writes the output rows {@code [first, first + n)} (counted from {@code start}) into {@code out} from 0. */
    private void fill(int first, int n, byte[] out) {
        ByteBuffer in = routing.rows();
        RoutingDtype stored = routing.dtype();
        int inBytes = stored.bytes();
        int rowBytes = routing.rowBytes();
        int topK = shape.topK();
        int layerOffset = options.layerFrom() * topK * inBytes;
        int ids = (options.layerTo() - options.layerFrom()) * topK;
        if (options.dtype() == FetchOptions.Dtype.NATIVE) {
            if (rowOutBytes == rowBytes) {
                in.get((start + first) * rowBytes, out, 0, n * rowBytes);
            } else {
                for (int r = 0; r < n; r++) {
                    in.get((start + first + r) * rowBytes + layerOffset, out, r * rowOutBytes, rowOutBytes);
                }
            }
            return;
        }
        ByteBuffer o = ByteBuffer.wrap(out).order(ByteOrder.LITTLE_ENDIAN);
        FetchOptions.Dtype dtype = options.dtype();
        boolean anyMissing = routing.missingRowCount() > 0;
        int at = 0;
        for (int r = 0; r < n; r++) {
            int position = start + first + r;
            int base = position * rowBytes + layerOffset;
            boolean missing = anyMissing && routing.isMissing(position);
            for (int i = 0; i < ids; i++) {
                int value = missing ? -1 : stored.read(in, base + i * inBytes);
                if (dtype == FetchOptions.Dtype.INT64) {
                    o.putLong(at, value);
                    at += 8;
                } else if (dtype == FetchOptions.Dtype.INT32) {
                    o.putInt(at, value);
                    at += 4;
                } else {
                    o.putShort(at, (short) value);
                    at += 2;
                }
            }
        }
    }
}
