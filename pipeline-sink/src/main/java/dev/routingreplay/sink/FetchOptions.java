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
 *   <li>{@code dtype=native|int32|int64}: the stored compact dtype (also accepted by its numpy name), or ids widened
 *       to a signed type in which a missing id (the store's sentinel) is -1.</li>
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
        /** As stored (uint8, uint16 or int32), the sentinel kept. */
        NATIVE,
        /** Signed 32-bit, a missing id is -1. */
        INT32,
        /** Signed 64-bit, a missing id is -1. */
        INT64
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
     * Parses and checks the query of a {@code .npy} route against the store's shape (every record has it); the start
     * is checked against the record later ({@link #end}).
     *
     * @throws BadParameter naming the parameter and value: an unknown or repeated parameter, a malformed value, a layer
     *     range that is empty or outside the store's layers
     */
    static FetchOptions parse(QueryParams q, RoutingShape shape) {
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
            RoutingDtype stored = shape.dtype();
            if (dtypeText.equals("int64")) {
                dtype = Dtype.INT64;
            } else if (dtypeText.equals("int32")) {
                dtype = stored == RoutingDtype.INT32 ? Dtype.NATIVE : Dtype.INT32;
            } else if (dtypeText.equals("native") || dtypeText.equals(stored.numpyName())) {
                dtype = Dtype.NATIVE;
            } else {
                throw new BadParameter("bad query parameter dtype='" + dtypeText + "': want native (the stored " + stored.numpyName()
                        + "), int32 or int64");
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
