package dev.routingreplay.sink;

import static dev.routingreplay.sink.HttpReplies.error;
import static dev.routingreplay.sink.HttpReplies.loop;
import static dev.routingreplay.sink.HttpReplies.onLoop;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.sink.HttpReplies.Rejection;
import dev.routingreplay.sink.RecordLookup.Address;
import dev.routingreplay.sink.RecordLookup.Found;
import dev.routingreplay.sink.RecordLookup.Resolved;
import io.netty.handler.codec.http.HttpResponseStatus;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Mono;
import reactor.netty.http.server.HttpServerResponse;

/**
 * One record as a {@code .npy} ({@code /requests/<ordinal>.npy}, {@code /requests/by-id/<id>.npy},
 * {@code /requests/index/<hex>.npy}): the {@link FetchOptions} query checked, the record found and its body prepared on
 * a replay reader, then the status line, the {@code X-R3-} headers and the body sent on the connection's event loop.
 */
final class NpyRoute {
    private final RoutingReplay replay;
    private final RecordLookup lookup;

    NpyRoute(RoutingReplay replay, RecordLookup lookup) {
        this.replay = replay;
        this.lookup = lookup;
    }

    /** Answers one {@code .npy} request for {@code address}. */
    Publisher<Void> npy(Address address, QueryParams query, HttpServerResponse res) {
        if (address.bad() != null) {
            int code = Integer.parseInt(address.bad().substring(0, 3));
            return error(res, HttpResponseStatus.valueOf(code), address.bad().substring(4));
        }
        RoutingShape shape = replay.manifest().shape();
        FetchOptions options;
        try {
            options = FetchOptions.parse(query, shape, replay.manifest().dtype());
        } catch (FetchOptions.BadParameter e) {
            return error(res, HttpResponseStatus.BAD_REQUEST, address.describe() + ": " + e.getMessage());
        }
        Mono<Answer> ready = Mono.fromCallable(() -> {
            Resolved found = lookup.resolve(address);
            return new Answer(found, found.rejection() == null ? prepare(found.found(), options) : null);
        }).subscribeOn(ReplayCursor.READERS);
        return onLoop(ready, res).flatMap(answer -> {
            Resolved found = answer.resolved();
            if (found.rejection() != null) {
                return Mono.from(error(res, found.rejection().status(), found.rejection().message()));
            }
            return Mono.from(send(answer.prepared(), found.found(), res));
        });
    }

    /** What a replay reader found for a {@code .npy} route, handed to the event loop to send. */
    record Answer(Resolved resolved, Prepared prepared) {
    }

    /**
     * The body to send and the missing rows it holds, or the 400 of a start past the record's end, or the 409 of a
     * native answer that would hold a missing row.
     */
    record Prepared(NpyBody body, int crc, int missingRows, String missingReasons, Rejection rejection) {
    }

    private Prepared prepare(Found found, FetchOptions options) {
        RequestRouting routing = found.stored().routing();
        int end = options.end(routing.seqLen());
        if (options.start() > end) {
            return new Prepared(null, 0, 0, "", new Rejection(HttpResponseStatus.BAD_REQUEST, "bad query parameter start='" + options.start()
                    + "': past the end of request '" + routing.requestId() + "' (seq_len " + routing.seqLen()
                    + (options.dropLast() ? ", " + end + " rows with drop_last" : "") + ")"));
        }
        if (options.dtype() == FetchOptions.Dtype.NATIVE) {
            String refusal = FetchOptions.missingRowsRefusal(routing, routing.shape(), options.start(), end);
            if (refusal != null) {
                return new Prepared(null, 0, 0, "", new Rejection(HttpResponseStatus.CONFLICT, refusal));
            }
        }
        NpyBody body = new NpyBody(routing, found.stored().header().rowsCrc(), options);
        return new Prepared(body, body.crc32c(), routing.missingRowsIn(options.start(), end), MissingReasonCounts.header(routing, options.start(), end), null);
    }

    private Publisher<Void> send(Prepared prepared, Found found, HttpServerResponse res) {
        if (prepared.rejection() != null) {
            return error(res, prepared.rejection().status(), prepared.rejection().message());
        }
        RoutingReplay.Stored stored = found.stored();
        RequestRecords.Header h = stored.header();
        // chunked, no content-length: a client that has the whole body sends its next request only after the server's
        // final chunk, so never while Netty still ends this response (with a content-length it could, and on a
        // kept-alive connection the request after that then went unanswered now and then: ReplayServerKeepAliveTest)
        res.header("content-type", "application/octet-stream")
                .header("x-r3-request-id", PathSegments.encode(h.requestId()))
                .header("x-r3-index", Long.toHexString(stored.index()))
                .header("x-r3-ordinal", Long.toString(found.ordinal()))
                .header("x-r3-round", Long.toString(h.round()))
                .header("x-r3-seq-len", Integer.toString(h.seqLen()))
                .header("x-r3-missing-rows", Integer.toString(prepared.missingRows()))
                .header("x-r3-missing-reasons", prepared.missingReasons())
                .header("x-r3-body-crc32c", Crc32c.hex(prepared.crc()));
        if (h.hasRowsCrc()) {
            res.header("x-r3-crc32c", Crc32c.hex((int) h.rowsCrc()));
        }
        return res.sendByteArray(prepared.body().chunks().subscribeOn(ReplayCursor.READERS).publishOn(loop(res), 2));
    }
}
