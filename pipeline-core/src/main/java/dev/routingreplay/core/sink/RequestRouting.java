package dev.routingreplay.core.sink;

import dev.routingreplay.core.RoutingDtype;
import dev.routingreplay.core.RoutingShape;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.EnumMap;
import java.util.Map;

/**
 * The routing of one finished request, self-describing: request id, shape {@code [seqLen, layers, topK]}, stored
 * dtype, the ids in token order (prompt, then output), little endian, and which rows are missing. Immutable;
 * {@link #rows()} is read-only.
 *
 * <p>A row is either recorded (every id of it) or missing, with a {@link MissingReason}: the store could not vouch
 * for it (docs/contract.md). Records written before reasons were stored give {@link MissingReason#INVALID_ID} for
 * their missing rows (a row the pack dropped, or in a store of format 2 a row holding the old sentinel). A missing
 * row's ids read as {@code -1} ({@link #id}, {@link #toIntArray}, {@link #toLongArray}); its bytes in {@link #rows()}
 * carry no meaning.
 */
public final class RequestRouting {
    private final String requestId;
    private final RoutingShape shape;
    private final RoutingDtype dtype;
    private final int seqLen;
    private final ByteBuffer rows;
    private final long[] missing;
    private final int missingCount;
    /** Reason code per position (0 = recorded), or null when no row is missing. */
    private final byte[] reasons;

    /**
     * Wraps {@code rows} (seqLen * rowBytes bytes, little endian, in the shape's dtype, every row recorded) without
     * copying; the caller must not change them.
     *
     * @throws IllegalArgumentException when the byte count does not match the shape
     */
    public RequestRouting(String requestId, RoutingShape shape, int seqLen, ByteBuffer rows) {
        this(requestId, shape, shape.dtype(), seqLen, rows, null);
    }

    /**
     * Wraps {@code rows} ({@code seqLen * idsPerRow * dtype.bytes()} bytes, little endian) without copying, with the
     * missing rows of {@code missingRows} (bit {@code p % 64} of word {@code p / 64} set for a missing position
     * {@code p}; copied; null or all zero when every row is recorded).
     *
     * @param dtype the dtype the rows are stored in: the shape's, or a wider one (records of stores of format 2)
     * @throws IllegalArgumentException when the byte count does not match, the dtype cannot hold the shape's ids, or
     *     the bitmap is too short or marks a position past {@code seqLen}
     */
    public RequestRouting(String requestId, RoutingShape shape, RoutingDtype dtype, int seqLen, ByteBuffer rows, long[] missingRows) {
        this(requestId, shape, dtype, seqLen, rows, missingRows, null);
    }

    /**
     * As {@link #RequestRouting(String, RoutingShape, RoutingDtype, int, ByteBuffer, long[])}, with the reason of each
     * missing row: {@code reasons[p]} is the {@link MissingReason} code of missing position {@code p} (copied; null
     * gives {@link MissingReason#INVALID_ID} to every missing row, what records without reasons meant).
     *
     * @throws IllegalArgumentException also when a missing position has no valid reason code, or a recorded one has one
     */
    public RequestRouting(String requestId, RoutingShape shape, RoutingDtype dtype, int seqLen, ByteBuffer rows, long[] missingRows,
            byte[] reasons) {
        if (dtype.maxExperts() < shape.numExperts()) {
            throw new IllegalArgumentException("request " + requestId + ": dtype " + dtype.numpyName() + " cannot hold the ids of "
                    + shape.numExperts() + " experts");
        }
        if ((long) seqLen * shape.idsPerRow() * dtype.bytes() != rows.remaining()) {
            throw new IllegalArgumentException("request " + requestId + ": " + rows.remaining() + " bytes of rows do not match seqLen="
                    + seqLen + " x rowBytes=" + shape.idsPerRow() * dtype.bytes());
        }
        int count = 0;
        long[] copy = null;
        if (missingRows != null) {
            int words = bitmapWords(seqLen);
            if (missingRows.length < words) {
                throw new IllegalArgumentException("request " + requestId + ": missing-row bitmap of " + missingRows.length
                        + " words for seqLen=" + seqLen);
            }
            for (int w = 0; w < missingRows.length; w++) {
                long bits = missingRows[w];
                long beyond = w >= words ? -1L : (seqLen & 63) != 0 && w == words - 1 ? -1L << (seqLen & 63) : 0L;
                if ((bits & beyond) != 0) {
                    throw new IllegalArgumentException("request " + requestId + ": missing-row bitmap marks a position past seqLen=" + seqLen);
                }
                count += Long.bitCount(bits);
            }
            copy = count == 0 ? null : Arrays.copyOf(missingRows, words);
        }
        this.requestId = requestId;
        this.shape = shape;
        this.dtype = dtype;
        this.seqLen = seqLen;
        this.rows = rows.slice().asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
        this.missing = copy;
        this.missingCount = count;
        this.reasons = count == 0 ? null : reasonTable(requestId, seqLen, copy, reasons);
    }

    private static byte[] reasonTable(String requestId, int seqLen, long[] missing, byte[] given) {
        if (given != null && given.length < seqLen) {
            throw new IllegalArgumentException("request " + requestId + ": reason table of " + given.length + " entries for seqLen=" + seqLen);
        }
        byte[] table = new byte[seqLen];
        for (int p = 0; p < seqLen; p++) {
            boolean isMissing = (missing[p >>> 6] & 1L << p) != 0;
            byte code = given == null ? (isMissing ? MissingReason.INVALID_ID.code() : 0) : given[p];
            if (isMissing) {
                MissingReason.ofCode(code);
            } else if (code != 0) {
                throw new IllegalArgumentException("request " + requestId + ": position " + p + " is recorded but has reason code " + code);
            }
            table[p] = code;
        }
        return table;
    }

    /** The number of 64-bit words a missing-row bitmap of {@code seqLen} positions takes. */
    public static int bitmapWords(int seqLen) {
        return (seqLen + 63) >>> 6;
    }

    /** The engine's request id. */
    public String requestId() {
        return requestId;
    }

    /** Routing shape of each position. */
    public RoutingShape shape() {
        return shape;
    }

    /** Stored dtype of the ids: the shape's, or a wider one for a record of a store of format 2. */
    public RoutingDtype dtype() {
        return dtype;
    }

    /** Rows that are missing (0 when every row is recorded). */
    public int missingRowCount() {
        return missingCount;
    }

    /** Whether position {@code position} is a missing row. */
    public boolean isMissing(int position) {
        if (position < 0 || position >= seqLen) {
            throw new IndexOutOfBoundsException("position " + position + " outside [0, " + seqLen + ")");
        }
        return missing != null && (missing[position >>> 6] & 1L << position) != 0;
    }

    /** Why position {@code position} is missing, or null when it is recorded. */
    public MissingReason missingReason(int position) {
        if (!isMissing(position)) {
            return null;
        }
        return MissingReason.ofCode(reasons[position]);
    }

    /** The number of missing rows per reason, in reason order; empty when none is missing. */
    public Map<MissingReason, Integer> missingReasonCounts() {
        Map<MissingReason, Integer> counts = new EnumMap<>(MissingReason.class);
        if (reasons != null) {
            for (byte code : reasons) {
                if (code != 0) {
                    counts.merge(MissingReason.ofCode(code), 1, Integer::sum);
                }
            }
        }
        return counts;
    }

    /** Missing rows among positions {@code [from, to)}. */
    public int missingRowsIn(int from, int to) {
        if (from < 0 || to > seqLen || from > to) {
            throw new IndexOutOfBoundsException("[" + from + ", " + to + ") outside [0, " + seqLen + "]");
        }
        if (missing == null) {
            return 0;
        }
        int n = 0;
        for (int p = from; p < to; p++) {
            if ((missing[p >>> 6] & 1L << p) != 0) {
                n++;
            }
        }
        return n;
    }

    /** The missing-row bitmap (bit {@code p % 64} of word {@code p / 64}), a copy; {@link #bitmapWords} words, all zero when none is missing. */
    public long[] missingRows() {
        return missing == null ? new long[bitmapWords(seqLen)] : missing.clone();
    }

    /** Bytes per row in the stored dtype. */
    public int rowBytes() {
        return shape.idsPerRow() * dtype.bytes();
    }

    /** Positions (forwarded tokens). */
    public int seqLen() {
        return seqLen;
    }

    /** Shape as trainers index it: {@code {seqLen, layers, topK}}. */
    public int[] dims() {
        return new int[] {seqLen, shape.moeLayers(), shape.topK()};
    }

    /**
     * The ids as stored, {@code [seqLen, layers, topK]} row-major in {@link #dtype()}, little endian, read-only; the
     * bytes of a missing row carry no meaning (check {@link #isMissing}).
     */
    public ByteBuffer rows() {
        return rows.duplicate().order(ByteOrder.LITTLE_ENDIAN);
    }

    /** The id at (position, layer, k); -1 in a missing row. */
    public int id(int position, int layer, int k) {
        if (position < 0 || position >= seqLen || layer < 0 || layer >= shape.moeLayers() || k < 0 || k >= shape.topK()) {
            throw new IndexOutOfBoundsException("(" + position + ", " + layer + ", " + k + ") outside [" + seqLen + ", "
                    + shape.moeLayers() + ", " + shape.topK() + "]");
        }
        if (isMissing(position)) {
            return -1;
        }
        return dtype.read(rows, ((position * shape.moeLayers() + layer) * shape.topK() + k) * dtype.bytes());
    }

    /** All ids, flattened row-major; -1 for every id of a missing row. */
    public int[] toIntArray() {
        int perRow = shape.idsPerRow();
        int n = seqLen * perRow;
        int[] out = new int[n];
        for (int i = 0; i < n; i++) {
            out[i] = dtype.read(rows, i * dtype.bytes());
        }
        if (missing != null) {
            for (int p = 0; p < seqLen; p++) {
                if (isMissing(p)) {
                    Arrays.fill(out, p * perRow, (p + 1) * perRow, -1);
                }
            }
        }
        return out;
    }

    /** All ids, flattened row-major, widened to {@code long} (what verl, slime and Megatron use); -1 in missing rows. */
    public long[] toLongArray() {
        int[] ints = toIntArray();
        long[] out = new long[ints.length];
        for (int i = 0; i < ints.length; i++) {
            out[i] = ints[i];
        }
        return out;
    }

    /** All ids as {@code [seqLen][layers][topK]}; -1 in missing rows. */
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

    /** Equal when id, shape, dtype, the missing rows and every byte of the rows are equal. */
    @Override
    public boolean equals(Object o) {
        return o instanceof RequestRouting r && r.requestId.equals(requestId) && r.shape.equals(shape) && r.dtype == dtype
                && r.seqLen == seqLen && Arrays.equals(r.missing, missing) && Arrays.equals(r.reasons, reasons) && r.rows.equals(rows);
    }

    @Override
    public int hashCode() {
        return requestId.hashCode() * 31 + seqLen;
    }

    @Override
    public String toString() {
        return "RequestRouting[" + requestId + ", seqLen=" + seqLen + ", " + shape.describe()
                + (dtype != shape.dtype() ? " stored as " + dtype.numpyName() : "") + (missingCount > 0 ? ", " + missingCount + " missing rows " + missingReasonCounts() : "") + "]";
    }
}
