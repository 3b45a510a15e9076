package dev.routingreplay.cluster;

/**
 * The part of each request's routing a trainer rank fetches, cut on the node's replay server so only those bytes move:
 * rows from {@code start} on (a new turn of a multi-turn request), MoE layers {@code [layerFrom, layerTo)} (a
 * pipeline-parallel rank's layers; 0-based MoE layer numbers), all of them when {@code layerTo} is -1. Ids stay in the
 * stored dtype.
 *
 * @param start first row, 0 or more; a request shorter than that is an error of the fetch (400 from the server)
 * @param layerFrom first MoE layer, 0 or more
 * @param layerTo one past the last MoE layer, or -1 for all layers from {@code layerFrom}
 */
public record Slice(int start, int layerFrom, int layerTo) {
    /** The whole record. */
    public static final Slice ALL = new Slice(0, 0, -1);

    /** Checks the fields, naming the bad one. */
    public Slice {
        if (start < 0 || layerFrom < 0) {
            throw new IllegalArgumentException("start and layerFrom must not be negative, were " + start + " and " + layerFrom);
        }
        if (layerTo != -1 && layerTo <= layerFrom) {
            throw new IllegalArgumentException("layerTo must be above layerFrom (" + layerFrom + ") or -1, was " + layerTo);
        }
    }

    /**
     * Parses {@code FROM:TO} (either end may be left out: {@code :8}, {@code 40:}) with the row {@code start}.
     *
     * @throws IllegalArgumentException naming the text when it is malformed
     */
    public static Slice parse(int start, String layers) {
        if (layers == null || layers.isEmpty()) {
            return new Slice(start, 0, -1);
        }
        int colon = layers.indexOf(':');
        if (colon < 0 || !layers.matches("[0-9]{0,9}:[0-9]{0,9}")) {
            throw new IllegalArgumentException("bad layers '" + layers + "': want FROM:TO (either end may be left out)");
        }
        String from = layers.substring(0, colon);
        String to = layers.substring(colon + 1);
        return new Slice(start, from.isEmpty() ? 0 : Integer.parseInt(from), to.isEmpty() ? -1 : Integer.parseInt(to));
    }

    /** Whether this is the whole record (its array bytes then have the writer's checksum). */
    public boolean whole() {
        return start == 0 && layerFrom == 0 && layerTo == -1;
    }

    /** The layers this slice keeps of a record with {@code moeLayers} layers. */
    int layers(int moeLayers) {
        return (layerTo == -1 ? moeLayers : Math.min(layerTo, moeLayers)) - layerFrom;
    }

    /** The replay server's query for this slice: empty, or {@code ?start=..&layers=..}. */
    String query() {
        if (whole()) {
            return "";
        }
        StringBuilder q = new StringBuilder("?");
        if (start > 0) {
            q.append("start=").append(start);
        }
        if (layerFrom > 0 || layerTo != -1) {
            q.append(q.length() > 1 ? "&" : "").append("layers=").append(layerFrom).append(':').append(layerTo == -1 ? "" : layerTo);
        }
        return q.toString();
    }
}
