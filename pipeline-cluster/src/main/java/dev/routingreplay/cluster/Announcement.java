package dev.routingreplay.cluster;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.sink.StoredRecord;
import java.util.Map;

/**
 * What a rollout node tells the cluster about one durable request record: where the payload is (the node's replay
 * server and the record's ordinal and index), what it is (shape, dtype, bytes) and the writer's checksum of its rows.
 * The payload stays on the node. On the topic it is one flat JSON object (see {@link #toJson()}), readable by any JSON
 * library:
 *
 * <pre>
 * {"version":1,"requestId":"p3-L40-s1","round":0,"node":"http://10.0.0.5:8787","ordinal":12,"index":"1c8acab00000003",
 *  "seqLen":812,"moeLayers":58,"topK":8,"numExperts":256,"dtype":"uint16","bytes":753536,"crc32c":"1a2b3c4d",
 *  "timeMicros":1795712345678901}
 * </pre>
 *
 * @param version the announcement format, {@value #VERSION}
 * @param requestId the engine's request id
 * @param round the node store's round the request finished in
 * @param node the base URL of the node's replay server ({@code r3 serve}), no trailing slash
 * @param ordinal the record's ordinal in the node's store (the stable address {@code /requests/<ordinal>.npy}), or -1 for a
 *     record written before record version 3 (then {@code index} addresses it)
 * @param index the record's Chronicle index in the node's store ({@code /requests/index/<hex>.npy})
 * @param seqLen positions stored
 * @param moeLayers MoE layers of each position
 * @param topK ids per layer
 * @param numExperts routed experts of the model
 * @param dtype the stored dtype's numpy name ({@code uint8}, {@code uint16}, {@code int32})
 * @param bytes bytes of the rows: {@code seqLen * moeLayers * topK * dtype bytes}
 * @param crc32c the writer's CRC32C of the rows in the stored dtype, 8 lowercase hex digits, or null for a record written
 *     before record version 3
 * @param timeMicros when the announcer read the durable record from the store, microseconds since the epoch
 */
public record Announcement(int version, String requestId, long round, String node, long ordinal, long index, int seqLen,
        int moeLayers, int topK, int numExperts, String dtype, long bytes, String crc32c, long timeMicros) {
    /** The announcement format this build writes and reads. */
    public static final int VERSION = 1;

    /** Checks every field, naming the bad one. */
    public Announcement {
        if (version != VERSION) {
            throw new IllegalArgumentException("announcement version " + version + ", this build reads version " + VERSION);
        }
        if (requestId == null || node == null || dtype == null) {
            throw new IllegalArgumentException("announcement without requestId, node or dtype");
        }
        if (!node.startsWith("http://") && !node.startsWith("https://")) {
            throw new IllegalArgumentException("announcement node '" + node + "' is not an http(s) URL");
        }
        if (seqLen < 0 || moeLayers <= 0 || topK <= 0 || numExperts <= 0 || bytes < 0) {
            throw new IllegalArgumentException("announcement of '" + requestId + "' has a bad shape: seqLen=" + seqLen + " moeLayers="
                    + moeLayers + " topK=" + topK + " numExperts=" + numExperts + " bytes=" + bytes);
        }
        if (crc32c != null && !crc32c.matches("[0-9a-f]{8}")) {
            throw new IllegalArgumentException("announcement of '" + requestId + "' has crc32c '" + crc32c + "': want 8 lowercase hex digits");
        }
    }

    /** The announcement of {@code record}, stored on the node whose replay server is at {@code node}, read at {@code timeMicros}. */
    public static Announcement of(StoredRecord record, String node, long timeMicros) {
        RoutingShape shape = record.shape();
        return new Announcement(VERSION, record.requestId(), record.round(), stripSlash(node), record.ordinal(), record.index(),
                record.seqLen(), shape.moeLayers(), shape.topK(), shape.numExperts(), shape.dtype().numpyName(), record.rowsBytes(),
                record.rowsCrc32c() < 0 ? null : String.format("%08x", record.rowsCrc32c()), timeMicros);
    }

    private static String stripSlash(String url) {
        return url.endsWith("/") ? url.substring(0, url.length() - 1) : url;
    }

    /** The routing shape of each position (its dtype follows from {@code numExperts}). */
    public RoutingShape shape() {
        return new RoutingShape(moeLayers, topK, numExperts);
    }

    /**
     * What consumers drop duplicates by: the request id and the checksum of its rows. A record without a checksum
     * (written before record version 3) is keyed by its id, node and index instead. Two announcements with the same key
     * name the same routing, so either one may be handed downstream, never both.
     */
    public String dedupKey() {
        return crc32c != null ? requestId + "\u0000" + crc32c : requestId + "\u0000" + node + "\u0000" + Long.toHexString(index);
    }

    /** Where the record is, for messages: {@code request 'ID' (ordinal N) at node URL}. */
    public String describe() {
        return "request '" + requestId + "' (" + (ordinal >= 0 ? "ordinal " + ordinal : "index " + Long.toHexString(index)) + ") at node "
                + node;
    }

    /** The announcement as one flat JSON object, members in the order of the record's components. */
    public String toJson() {
        return "{\"version\":" + version + ",\"requestId\":" + FlatJson.quote(requestId) + ",\"round\":" + round + ",\"node\":"
                + FlatJson.quote(node) + ",\"ordinal\":" + ordinal + ",\"index\":\"" + Long.toHexString(index) + "\",\"seqLen\":" + seqLen
                + ",\"moeLayers\":" + moeLayers + ",\"topK\":" + topK + ",\"numExperts\":" + numExperts + ",\"dtype\":"
                + FlatJson.quote(dtype) + ",\"bytes\":" + bytes + ",\"crc32c\":" + (crc32c == null ? "null" : FlatJson.quote(crc32c))
                + ",\"timeMicros\":" + timeMicros + "}";
    }

    /**
     * Reads an announcement written by {@link #toJson()} (members in any order; unknown members are ignored, so a later
     * minor addition does not break this reader).
     *
     * @throws IllegalArgumentException naming the member when one is missing, of the wrong type or out of range, or when
     *     the version is not {@value #VERSION}
     */
    public static Announcement parse(String json) {
        Map<String, Object> m = FlatJson.parse(json);
        String index = string(m, "index", false);
        long at;
        try {
            at = Long.parseUnsignedLong(index, 16);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("announcement member index='" + index + "' is not a hex index");
        }
        return new Announcement((int) number(m, "version"), string(m, "requestId", false), number(m, "round"), string(m, "node", false),
                number(m, "ordinal"), at, (int) number(m, "seqLen"), (int) number(m, "moeLayers"), (int) number(m, "topK"),
                (int) number(m, "numExperts"), string(m, "dtype", false), number(m, "bytes"), string(m, "crc32c", true),
                number(m, "timeMicros"));
    }

    private static long number(Map<String, Object> m, String name) {
        Object v = m.get(name);
        if (!(v instanceof Long)) {
            throw new IllegalArgumentException("announcement member " + name + " must be a whole number, was " + v);
        }
        return (Long) v;
    }

    private static String string(Map<String, Object> m, String name, boolean nullable) {
        Object v = m.get(name);
        if (v == null && nullable && m.containsKey(name)) {
            return null;
        }
        if (!(v instanceof String)) {
            throw new IllegalArgumentException("announcement member " + name + " must be a string, was " + v);
        }
        return (String) v;
    }
}
