package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingDtype;
import dev.routingreplay.core.RoutingShape;
import java.util.List;
import java.util.Set;

/**
 * What part of one request's routing a trainer asked for, and in which dtype: the query parameters of the server's
 * {@code .npy} routes, checked before anything is read.
 *
 * <ul>
 *   <li>{@code start=N}: the first token position served (a new turn of a multi-turn request), 0 by default;</li>
 *   <li>{@code layers=FROM:TO}: MoE layers FROM to TO-1 (half-open, 0-based MoE layer numbers, dense layers not
 *       counted), all by default; either end may be left out ({@code :8}, {@code 40:});</li>
 *   <li>{@code drop_last=true}: without the last position's row ({@code S-1} rows: the final token was never
 *       forwarded as an input, trainers that shift by one want {@code [S-1, L, K]});</li>
 *   <li>{@code dtype=native|int16|int32|int64}: the stored compact dtype (also accepted by its numpy name), which
 *       cannot carry a missing row (the server refuses a native slice with missing rows, see {@link #missingRowsRefusal}),
 *       or ids widened to a signed type in which every id of a missing row is -1; {@code int16} only where it holds
 *       every expert id (up to 32768 experts).</li>
 * </ul>
 *
 * @param start the first position
 * @param layerFrom the first layer
 * @param layerTo one past the last layer
 * @param dropLast whether the last position is left out
 * @param dtype the dtype served
 */
record FetchOptions(int start, int layerFrom, int layerTo, boolean dropLast, Dtype dtype) {
    /** The parameters the {@code .npy} routes take. */
    static final List<String> NAMES = List.of("start", "layers", "drop_last", "dtype");

    /** The dtypes a trainer may ask for. */
    enum Dtype {
        /** As stored (uint8, uint16 or int32); cannot carry a missing row. */
        NATIVE,
        /** Signed 16-bit (verl's type), every id of a missing row is -1; for up to 32768 experts. */
        INT16,
        /** Signed 32-bit, every id of a missing row is -1. */
        INT32,
        /** Signed 64-bit, every id of a missing row is -1. */
        INT64;

        /** numpy's name of a signed dtype ({@code int16}, ...); {@code native} for {@link #NATIVE}. */
        String wireName() {
            return name().toLowerCase(java.util.Locale.ROOT);
        }
    }

    /** The signed dtypes that hold every id of {@code shape} and -1: the ones a record with missing rows can be served in. */
    static List<Dtype> missingDtypes(RoutingShape shape) {
        return shape.numExperts() <= Short.MAX_VALUE + 1 ? List.of(Dtype.INT16, Dtype.INT32, Dtype.INT64) : List.of(Dtype.INT32, Dtype.INT64);
    }

    /**
     * The reason a native answer of rows {@code [start, end)} of {@code routing} is refused, or null: the stored dtype
     * cannot express a missing row, so a slice holding any is refused (never zeros or a made-up id). The message names
     * the count and the dtypes that can carry -1.
     */
    static String missingRowsRefusal(dev.routingreplay.core.sink.RequestRouting routing, RoutingShape shape, int start, int end) {
        int missing = routing.missingRowsIn(start, end);
        if (missing == 0) {
            return null;
        }
        StringBuilder names = new StringBuilder();
        for (Dtype d : missingDtypes(shape)) {
            names.append(names.length() == 0 ? "" : ", ").append(d.wireName());
        }
        return "dtype=native (" + routing.dtype().numpyName() + ") cannot carry the " + missing + " missing row" + (missing == 1 ? "" : "s")
                + " of positions " + start + ".." + end + " of request '" + routing.requestId() + "' (rows the rollout did not record); ask dtype="
                + names + ", where every id of a missing row is -1";
    }

    /** A malformed or out-of-range parameter: the message names it and its value. */
    static final class BadParameter extends RuntimeException {
        private static final long serialVersionUID = 1L;

        BadParameter(String message) {
            super(message, null, false, false);
        }
    }

    /** The whole record in its stored dtype. */
    static FetchOptions all(RoutingShape shape) {
        return new FetchOptions(0, 0, shape.moeLayers(), false, Dtype.NATIVE);
    }

    /**
     * Parses and checks the query of a {@code .npy} route against the store's shape and stored dtype (every record has
     * them); the start is checked against the record later ({@link #end}).
     *
     * @throws BadParameter naming the parameter and value: an unknown or repeated parameter, a malformed value, a layer
     *     range that is empty or outside the store's layers, int16 for a store of more than 32768 experts
     */
    static FetchOptions parse(QueryParams q, RoutingShape shape, RoutingDtype stored) {
        Set<String> names = q.names();
        for (String name : names) {
            if (!NAMES.contains(name)) {
                throw new BadParameter("unknown query parameter '" + name + "': the .npy routes take " + String.join(", ", NAMES));
            }
            if (q.count(name) > 1) {
                throw new BadParameter("query parameter " + name + " given " + q.count(name) + " times; give it once");
            }
        }
        int start = 0;
        String startText = q.get("start");
        if (startText != null) {
            if (!startText.matches("[0-9]{1,10}") || Long.parseLong(startText) > Integer.MAX_VALUE) {
                throw new BadParameter("bad query parameter start='" + startText + "': want the first token position, a whole number 0 or more");
            }
            start = Integer.parseInt(startText);
        }
        int from = 0;
        int to = shape.moeLayers();
        String layersText = q.get("layers");
        if (layersText != null) {
            String want = "want FROM:TO, a half-open range of MoE layers with 0 <= FROM < TO <= " + shape.moeLayers()
                    + " (the store's layers), e.g. 0:" + Math.min(2, shape.moeLayers());
            if (!layersText.matches("[0-9]{0,9}:[0-9]{0,9}")) {
                throw new BadParameter("bad query parameter layers='" + layersText + "': " + want);
            }
            int colon = layersText.indexOf(':');
            if (colon > 0) {
                from = Integer.parseInt(layersText.substring(0, colon));
            }
            if (colon < layersText.length() - 1) {
                to = Integer.parseInt(layersText.substring(colon + 1));
            }
            if (from >= to || to > shape.moeLayers()) {
                throw new BadParameter("bad query parameter layers='" + layersText + "': " + want);
            }
        }
        boolean dropLast = false;
        String dropText = q.get("drop_last");
        if (dropText != null) {
            if (!dropText.equals("true") && !dropText.equals("false")) {
                throw new BadParameter("bad query parameter drop_last='" + dropText + "': want true or false");
            }
            dropLast = dropText.equals("true");
        }
        Dtype dtype = Dtype.NATIVE;
        String dtypeText = q.get("dtype");
        if (dtypeText != null) {
            if (dtypeText.equals("int64")) {
                dtype = Dtype.INT64;
            } else if (dtypeText.equals("int32")) {
                dtype = Dtype.INT32;
            } else if (dtypeText.equals("int16")) {
                if (!missingDtypes(shape).contains(Dtype.INT16)) {
                    throw new BadParameter("bad query parameter dtype='int16': int16 cannot hold the expert ids of this store (up to "
                            + (shape.numExperts() - 1) + "); want int32 or int64");
                }
                dtype = Dtype.INT16;
            } else if (dtypeText.equals("native") || dtypeText.equals(stored.numpyName())) {
                dtype = Dtype.NATIVE;
            } else {
                throw new BadParameter("bad query parameter dtype='" + dtypeText + "': want native (the stored " + stored.numpyName()
                        + "), int16, int32 or int64");
            }
        }
        return new FetchOptions(start, from, to, dropLast, dtype);
    }

    /** One past the last position served of a record of {@code seqLen} positions. */
    int end(int seqLen) {
        return dropLast ? Math.max(seqLen - 1, 0) : seqLen;
    }

    /** Whether these options serve a record whole, byte for byte as stored. */
    boolean whole(RoutingShape shape) {
        return start == 0 && !dropLast && layerFrom == 0 && layerTo == shape.moeLayers() && dtype == Dtype.NATIVE;
    }
}
