package dev.routingreplay.core.sink;

import dev.routingreplay.core.RoutingDtype;
import dev.routingreplay.core.RoutingShape;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The routing of one finished request, self-describing: request id, shape {@code [seqLen, layers, topK]}, dtype,
 * and the ids in token order (prompt, then output), little endian. Immutable; {@link #rows()} is read-only.
 */
public final class RequestRouting {
    private final String requestId;
    private final RoutingShape shape;
    private final int seqLen;
    private final ByteBuffer rows;

    /**
     * Wraps {@code rows} (seqLen * rowBytes bytes, little endian) without copying; the caller must not change them.
     *
     * @throws IllegalArgumentException when the byte count does not match the shape
     */
    public RequestRouting(String requestId, RoutingShape shape, int seqLen, ByteBuffer rows) {
        if ((long) seqLen * shape.rowBytes() != rows.remaining()) {
            throw new IllegalArgumentException("request " + requestId + ": " + rows.remaining() + " bytes of rows do not match seqLen="
                    + seqLen + " x rowBytes=" + shape.rowBytes());
        }
        this.requestId = requestId;
        this.shape = shape;
        this.seqLen = seqLen;
        this.rows = rows.slice().asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
    }

    /** The engine's request id. */
    public String requestId() {
        return requestId;
    }

    /** Routing shape of each position. */
    public RoutingShape shape() {
        return shape;
    }

    /** Stored dtype of the ids. */
    public RoutingDtype dtype() {
        return shape.dtype();
    }

    /** Positions (forwarded tokens). */
    public int seqLen() {
        return seqLen;
    }

    /** Shape as trainers index it: {@code {seqLen, layers, topK}}. */
    public int[] dims() {
        return new int[] {seqLen, shape.moeLayers(), shape.topK()};
    }

    /** The ids, {@code [seqLen, layers, topK]} row-major in {@link #dtype()}, little endian, read-only. */
    public ByteBuffer rows() {
        return rows.duplicate().order(ByteOrder.LITTLE_ENDIAN);
    }

    /** The id at (position, layer, k). */
    public int id(int position, int layer, int k) {
        if (position < 0 || position >= seqLen || layer < 0 || layer >= shape.moeLayers() || k < 0 || k >= shape.topK()) {
            throw new IndexOutOfBoundsException("(" + position + ", " + layer + ", " + k + ") outside [" + seqLen + ", "
                    + shape.moeLayers() + ", " + shape.topK() + "]");
        }
        return shape.dtype().read(rows, ((position * shape.moeLayers() + layer) * shape.topK() + k) * shape.dtype().bytes());
    }

    /** All ids, flattened row-major. */
    public int[] toIntArray() {
        RoutingDtype dtype = shape.dtype();
        int n = seqLen * shape.idsPerRow();
        int[] out = new int[n];
        for (int i = 0; i < n; i++) {
            out[i] = dtype.read(rows, i * dtype.bytes());
        }
        return out;
    }

    /** All ids, flattened row-major, widened to {@code long} (what verl, slime and Megatron use). */
    public long[] toLongArray() {
        int[] ints = toIntArray();
        long[] out = new long[ints.length];
        for (int i = 0; i < ints.length; i++) {
            out[i] = ints[i];
        }
        return out;
    }

    /** All ids as {@code [seqLen][layers][topK]}. */
    public int[][][] toArray() {
        int[][][] out = new int[seqLen][shape.moeLayers()][shape.topK()];
        for (int p = 0; p < seqLen; p++) {
            for (int l = 0; l < shape.moeLayers(); l++) {
                for (int k = 0; k < shape.topK(); k++) {
                    out[p][l][k] = id(p, l, k);
                }
            }
        }
        return out;
    }

    /** Equal when id, shape and every byte of the rows are equal. */
    @Override
    public boolean equals(Object o) {
        return o instanceof RequestRouting r && r.requestId.equals(requestId) && r.shape.equals(shape) && r.seqLen == seqLen
                && r.rows.equals(rows);
    }

    @Override
    public int hashCode() {
        return requestId.hashCode() * 31 + seqLen;
    }

    @Override
    public String toString() {
        return "RequestRouting[" + requestId + ", seqLen=" + seqLen + ", " + shape.describe() + "]";
    }
}
