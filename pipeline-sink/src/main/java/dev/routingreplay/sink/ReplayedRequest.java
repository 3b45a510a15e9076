package dev.routingreplay.sink;

import dev.routingreplay.core.sink.RequestRouting;

/**
 * A request read back from the store, with its position in the request queue so a trainer can save it and resume
 * after it ({@link RoutingReplay#after(long)}).
 *
 * @param index the record's Chronicle index in the request queue
 * @param round the store round the request finished in
 * @param routing the request's routing
 */
public record ReplayedRequest(long index, long round, RequestRouting routing) {
}
