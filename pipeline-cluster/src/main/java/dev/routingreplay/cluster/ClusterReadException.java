package dev.routingreplay.cluster;

/**
 * A {@link ClusterReader} failure: a node that stayed away past the retries, a record a node refused or served wrong,
 * or the Kafka side. The message names the node and the request when there is one.
 */
public final class ClusterReadException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final String node;
    private final String requestId;

    /** A failure concerning {@code announcement}'s record (null for one of the Kafka side), with the message and cause. */
    public ClusterReadException(Announcement announcement, String message, Throwable cause) {
        super(announcement == null ? message : announcement.describe() + ": " + message, cause);
        this.node = announcement == null ? null : announcement.node();
        this.requestId = announcement == null ? null : announcement.requestId();
    }

    /** The node the failed fetch went to, or null. */
    public String node() {
        return node;
    }

    /** The request id of the failed fetch, or null. */
    public String requestId() {
        return requestId;
    }
}
