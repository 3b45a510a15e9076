package dev.routingreplay.cluster;

import dev.routingreplay.core.sink.RequestRouting;

/**
 * One announced request as a trainer receives it from a {@link ClusterReader}: the announcement (node, ordinal,
 * checksum, time) and the routing fetched from the node, checked. With a {@link Slice}, {@code routing} holds only the
 * sliced rows and layers (its shape's {@code moeLayers} is the slice's layer count; {@code seqLen} the rows fetched).
 *
 * @param announcement what the node announced
 * @param routing the fetched routing, in the stored dtype
 * @param partition the Kafka partition the announcement came from
 * @param offset its offset there
 */
public record ClusterRecord(Announcement announcement, RequestRouting routing, int partition, long offset) {
}
