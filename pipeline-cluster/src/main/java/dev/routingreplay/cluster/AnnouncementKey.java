package dev.routingreplay.cluster;

import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * The Kafka key an announcement is sent with. Kafka keeps the order of records with one key (they go to one partition),
 * so every announcement of a request, re-announcements after a crash included, lands in the same partition, which is
 * what lets the consumer that owns the partition drop the duplicate. Implementations must be deterministic functions
 * of the announcement.
 */
@FunctionalInterface
public interface AnnouncementKey {
    /** The key of {@code announcement}; never null. */
    String keyOf(Announcement announcement);

    /** The request id (the default): order per request. */
    static AnnouncementKey requestId() {
        return Announcement::requestId;
    }

    /**
     * The first capture group of {@code pattern} found in the request id (a rollout group, e.g. {@code ^(p\d+)-} keeps every
     * sample of a GRPO prompt group in one partition, in order), or the whole id when it does not match.
     *
     * @throws IllegalArgumentException when the pattern has no capture group
     */
    static AnnouncementKey group(Pattern pattern) {
        if (pattern.matcher("").groupCount() < 1) {
            throw new IllegalArgumentException("the rollout group pattern '" + pattern + "' has no capture group");
        }
        return a -> {
            Matcher m = pattern.matcher(a.requestId());
            return m.find() && m.group(1) != null ? m.group(1) : a.requestId();
        };
    }

    /**
     * Parses a key spec: {@code request-id}, or {@code group:<regex>} (see {@link #group}).
     *
     * @throws IllegalArgumentException naming the spec when it is neither
     */
    static AnnouncementKey parse(String spec) {
        if ("request-id".equals(spec)) {
            return requestId();
        }
        if (spec != null && spec.startsWith("group:")) {
            try {
                return group(Pattern.compile(spec.substring("group:".length())));
            } catch (PatternSyntaxException e) {
                throw new IllegalArgumentException("bad rollout group pattern in '" + spec + "': " + e.getDescription());
            }
        }
        throw new IllegalArgumentException("bad announcement key '" + spec + "': want request-id or group:<regex with one capture group>");
    }
}
