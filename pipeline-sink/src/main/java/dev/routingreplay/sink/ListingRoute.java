package dev.routingreplay.sink;

import static dev.routingreplay.sink.HttpReplies.error;
import static dev.routingreplay.sink.HttpReplies.jsonEscape;
import static dev.routingreplay.sink.HttpReplies.loop;
import static dev.routingreplay.sink.HttpReplies.onLoop;
import static dev.routingreplay.sink.HttpReplies.parseHex;

import dev.routingreplay.sink.HttpReplies.Rejection;
import io.netty.handler.codec.http.HttpResponseStatus;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicInteger;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.netty.http.server.HttpServerResponse;

/**
 * {@code GET /requests[?after=HEX][&limit=N][&follow=true]}: the NDJSON listing (ReplayServer's Javadoc has its lines),
 * every parameter and the cursor checked before the status line, live followers bounded.
 */
final class ListingRoute {
    private final RoutingReplay replay;
    private final RequestIndex index;
    private final RecordLookup lookup;
    private final ReplayServer.Limits limits;
    private final AtomicInteger followers;

    ListingRoute(RoutingReplay replay, RequestIndex index, RecordLookup lookup, ReplayServer.Limits limits, AtomicInteger followers) {
        this.replay = replay;
        this.index = index;
        this.lookup = lookup;
        this.limits = limits;
        this.followers = followers;
    }

    /** Answers one listing request. */
    Publisher<Void> list(QueryParams q, HttpServerResponse res) {
        String afterText = q.get("after");
        String limitText = q.get("limit");
        String followText = q.get("follow");
        long after = -1;
        if (afterText != null) {
            after = parseHex(afterText);
            if (after < 0) {
                return error(res, HttpResponseStatus.BAD_REQUEST, "bad query parameter after='" + afterText
                        + "': want a record index in hex (1 to 16 digits, as in the index field of /requests)");
            }
        }
        long limit = Long.MAX_VALUE;
        if (limitText != null) {
            if (!limitText.matches("[0-9]+")) {
                return error(res, HttpResponseStatus.BAD_REQUEST, "bad query parameter limit='" + limitText
                        + "': want a count of records (a whole number, 0 or more)");
            }
            // any count of digits: past Long.MAX_VALUE it means "all", as no limit does
            limit = limitText.length() > 18 && new java.math.BigInteger(limitText).bitLength() > 63 ? Long.MAX_VALUE : Long.parseLong(limitText);
        }
        if (followText != null && !followText.equals("true") && !followText.equals("false")) {
            return error(res, HttpResponseStatus.BAD_REQUEST, "bad query parameter follow='" + followText + "': want true or false");
        }
        boolean follow = "true".equals(followText);
        long cursor = after;
        long take = limit;
        // the cursor is checked before the status line: once 200 is sent, a failure can only cut the body off
        Mono<Optional<Rejection>> check = cursor < 0 ? Mono.just(Optional.empty())
                : replay.exists(cursor).flatMap(found -> found ? Mono.just(Optional.<Rejection>empty())
                        : lookup.unknownIndex("after", cursor).map(Optional::of));
        return onLoop(check, res).flatMap(rejection -> {
            if (rejection.isPresent()) {
                return Mono.from(error(res, rejection.get().status(), rejection.get().message()));
            }
            if (follow && followers.incrementAndGet() > limits.maxFollowers()) {
                followers.decrementAndGet();
                res.header("retry-after", "5");
                return Mono.from(error(res, HttpResponseStatus.SERVICE_UNAVAILABLE, "too many live followers (at most "
                        + limits.maxFollowers() + ", set by --max-followers); retry later"));
            }
            // a damaged record is a line saying so, and the listing goes on; lost records end it with a line naming them
            Flux<String> lines = replay.listing(cursor, follow).take(take).map(l -> l.request() == null
                    ? "{\"index\":\"" + Long.toHexString(l.index()) + "\",\"ordinal\":" + index.ordinalOf(l.index())
                            + ",\"damaged\":true,\"reason\":\"" + jsonEscape(l.damage()) + "\"}\n"
                    : listingLine(l.request()))
                    .onErrorResume(StoreLossException.class, e -> Flux.just("{\"lost\":true,\"reason\":\"" + jsonEscape(e.problem()) + "\"}\n"));
            if (follow) {
                lines = lines.doFinally(signal -> followers.decrementAndGet());
            }
            return Mono.from(res.header("content-type", "application/x-ndjson").sendString(lines.publishOn(loop(res), 32)));
        });
    }

    /**
     * One listing line: index, ordinal, id, round, seqLen, missingRows, missingReasons (count per reason) and, when a
     * newer record of the same id exists (what by-id fetches), {@code supersededBy} with its ordinal.
     */
    String listingLine(ReplayedRequest r) {
        long ordinal = index.ordinalOf(r.index());
        long newer = lookup.supersededBy(r.routing().requestId(), ordinal);
        return "{\"index\":\"" + Long.toHexString(r.index()) + "\",\"ordinal\":" + ordinal + ",\"requestId\":\""
                + jsonEscape(r.routing().requestId()) + "\",\"round\":" + r.round() + ",\"seqLen\":" + r.routing().seqLen()
                + ",\"missingRows\":" + r.routing().missingRowCount() + ",\"missingReasons\":" + MissingReasonCounts.json(r.routing(), 0, r.routing().seqLen())
                + (newer >= 0 ? ",\"supersededBy\":" + newer : "") + "}\n";
    }
}
