package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.sink.RequestRouting;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpResponseStatus;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BiFunction;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.netty.DisposableServer;
import reactor.netty.http.server.HttpServer;
import reactor.netty.http.server.HttpServerRequest;
import reactor.netty.http.server.HttpServerResponse;

/**
 * Serves a store's finished requests over HTTP (Reactor Netty), for trainers that are not on the JVM:
 * <ul>
 *   <li>{@code GET /manifest}: the store's shape, dtype and slot capacity, as JSON;</li>
 *   <li>{@code GET /requests[?after=HEX][&limit=N][&follow=true]}: one JSON line per record ({@code index},
 *       {@code requestId}, {@code round}, {@code seqLen}), NDJSON, in queue order; with {@code follow=true} the
 *       response stays open and new records are sent as they are written;</li>
 *   <li>{@code GET /requests/HEX.npy}: the record at that index as a numpy {@code .npy} file
 *       ({@code [seq_len, layers, top_k]}, the stored dtype): {@code numpy.load(io.BytesIO(body))}.</li>
 * </ul>
 * Reads happen on the replay's own threads, never on Netty's event loop. Every parameter and cursor is checked before
 * the status line, so a 200 always means a well-formed answer follows. Errors are plain text naming the parameter and
 * value (never the store's path): 400 for a malformed parameter (an index is 1 to 16 hex digits; {@code limit} a count;
 * {@code follow} true or false), 404 for an index with no record, 410 for one below the first record still stored
 * (deleted by retention), 404 for an unknown path, and 405 (with {@code Allow: GET}) for a method other than GET on any
 * route. Live followers are bounded ({@link Limits#maxFollowers}: 503 with {@code Retry-After} past it), and a connection
 * whose request does not arrive within {@link Limits#idleTimeout} is closed, slow-loris clients included.
 */
public final class ReplayServer implements AutoCloseable {
    private static final String NPY_PREFIX = "/requests/";

    private final RoutingReplay replay;
    private final Limits limits;
    private final AtomicInteger followers = new AtomicInteger();
    private final DisposableServer server;

    /**
     * What the server allows a connection.
     *
     * @param idleTimeout a connection is closed when a request's headers have not all arrived this long after it opened
     *     or after the previous response ended, however slowly they dribble in (slow-loris clients); a streaming
     *     response is not cut
     * @param maxFollowers most live {@code follow=true} responses at once; one more is answered 503
     */
    public record Limits(Duration idleTimeout, int maxFollowers) {
        /** 30 s, 256 followers. */
        public static final Limits DEFAULT = new Limits(Duration.ofSeconds(30), 256);

        /** Validates both fields, naming the bad one. */
        public Limits {
            if (idleTimeout == null || idleTimeout.isNegative() || idleTimeout.isZero()) {
                throw new IllegalArgumentException("idleTimeout must be positive, was " + idleTimeout);
            }
            if (maxFollowers < 0) {
                throw new IllegalArgumentException("maxFollowers must not be negative, was " + maxFollowers);
            }
        }
    }

    private ReplayServer(Path store, String host, int port, Limits limits) {
        this.limits = limits;
        this.replay = RoutingReplay.open(store);
        try {
            // Reactor Netty's idle timeout watches decoded requests, not bytes: a request dribbled byte by byte is
            // closed at the timeout too (ReplayServerHygieneTest)
            this.server = HttpServer.create().host(host).port(port)
                    .idleTimeout(limits.idleTimeout())
                    .route(routes -> routes.route(req -> true, this::dispatch))
                    .bindNow();
        } catch (RuntimeException e) {
            replay.close();
            throw e;
        }
    }

    /**
     * Starts serving the store at {@code store} on {@code host:port} (port 0 picks a free one) with {@link Limits#DEFAULT}.
     *
     * @throws StoreException naming the path when it is not a readable store
     */
    public static ReplayServer start(Path store, String host, int port) {
        return start(store, host, port, Limits.DEFAULT);
    }

    /**
     * Starts serving the store at {@code store} on {@code host:port} (port 0 picks a free one) with {@code limits}.
     *
     * @throws StoreException naming the path when it is not a readable store
     */
    public static ReplayServer start(Path store, String host, int port, Limits limits) {
        return new ReplayServer(store, host, port, limits);
    }

    /** Live {@code follow=true} responses now. */
    public int followers() {
        return followers.get();
    }

    /** The port the server listens on. */
    public int port() {
        return server.port();
    }

    private String manifestJson() {
        StoreManifest m = replay.manifest();
        RoutingShape s = m.shape();
        return "{\"moeLayers\":" + s.moeLayers() + ",\"topK\":" + s.topK() + ",\"numExperts\":" + s.numExperts() + ",\"dtype\":\""
                + s.dtype().numpyName() + "\",\"slotCapacity\":" + m.slotCapacity() + "}";
    }

    private static Publisher<Void> json(HttpServerResponse res, String body) {
        return res.header("content-type", "application/json").sendString(Mono.just(body));
    }

    private static Publisher<Void> error(HttpServerResponse res, HttpResponseStatus status, String message) {
        return res.status(status).header("content-type", "text/plain; charset=utf-8").sendString(Mono.just(message + "\n"));
    }

    /** Routes by path, then checks the method, so every route answers 405 to a method other than GET. */
    private Publisher<Void> dispatch(HttpServerRequest req, HttpServerResponse res) {
        QueryParams query = QueryParams.of(req.uri());
        String path = query.path();
        BiFunction<HttpServerRequest, HttpServerResponse, Publisher<Void>> route;
        if (path.equals("/manifest")) {
            route = (rq, rs) -> json(rs, manifestJson());
        } else if (path.equals("/requests")) {
            route = (rq, rs) -> list(query, rs);
        } else if (path.startsWith(NPY_PREFIX) && path.indexOf('/', NPY_PREFIX.length()) < 0) {
            route = (rq, rs) -> npy(path.substring(NPY_PREFIX.length()), rs);
        } else {
            return error(res, HttpResponseStatus.NOT_FOUND, "no such resource " + path + " (the server has /manifest, /requests and "
                    + "/requests/<hex index>.npy)");
        }
        if (!HttpMethod.GET.equals(req.method())) {
            res.header("allow", "GET");
            return error(res, HttpResponseStatus.METHOD_NOT_ALLOWED, "method " + req.method().name() + " is not allowed on " + path
                    + "; use GET");
        }
        return route.apply(req, res);
    }

    private Publisher<Void> list(QueryParams q, HttpServerResponse res) {
        String afterText = q.get("after");
        String limitText = q.get("limit");
        String followText = q.get("follow");
        long after = -1;
        if (afterText != null) {
            after = parseIndex(afterText);
            if (after < 0) {
                return error(res, HttpResponseStatus.BAD_REQUEST, "bad query parameter after='" + afterText
                        + "': want a record index in hex (1 to 16 digits, as in the index field of /requests)");
            }
        }
        long limit = Long.MAX_VALUE;
        if (limitText != null) {
            if (!limitText.matches("[0-9]{1,18}")) {
                return error(res, HttpResponseStatus.BAD_REQUEST, "bad query parameter limit='" + limitText
                        + "': want a count of records (a whole number, 0 or more)");
            }
            limit = Long.parseLong(limitText);
        }
        if (followText != null && !followText.equals("true") && !followText.equals("false")) {
            return error(res, HttpResponseStatus.BAD_REQUEST, "bad query parameter follow='" + followText + "': want true or false");
        }
        boolean follow = "true".equals(followText);
        long cursor = after;
        long take = limit;
        // the cursor is checked before the status line: once 200 is sent, a failure can only cut the body off
        Mono<Optional<Rejection>> check = cursor < 0 ? Mono.just(Optional.empty())
                : replay.at(cursor).map(r -> Optional.<Rejection>empty())
                        .onErrorResume(StoreException.class, e -> unknownIndex("after", cursor).map(Optional::of));
        return check.flatMap(rejection -> {
            if (rejection.isPresent()) {
                return Mono.from(error(res, rejection.get().status(), rejection.get().message()));
            }
            if (follow && followers.incrementAndGet() > limits.maxFollowers()) {
                followers.decrementAndGet();
                res.header("retry-after", "5");
                return Mono.from(error(res, HttpResponseStatus.SERVICE_UNAVAILABLE, "too many live followers (at most "
                        + limits.maxFollowers() + ", set by --max-followers); retry later"));
            }
            Flux<ReplayedRequest> records;
            if (cursor >= 0) {
                records = follow ? replay.afterThenLive(cursor) : replay.after(cursor);
            } else {
                records = follow ? replay.fromStartThenLive() : replay.fromStart();
            }
            Flux<String> lines = records.take(take).map(r -> "{\"index\":\"" + Long.toHexString(r.index()) + "\",\"requestId\":\""
                    + jsonEscape(r.routing().requestId()) + "\",\"round\":" + r.round() + ",\"seqLen\":" + r.routing().seqLen() + "}\n");
            if (follow) {
                lines = lines.doFinally(signal -> followers.decrementAndGet());
            }
            return Mono.from(res.header("content-type", "application/x-ndjson").sendString(lines));
        });
    }

    /** A record index in hex (1 to 16 digits, not negative), or -1 when {@code text} is not one. */
    private static long parseIndex(String text) {
        if (!text.matches("[0-9a-fA-F]{1,16}")) {
            return -1;
        }
        try {
            return Long.parseLong(text, 16);
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    /** Why {@code index} (named by {@code parameter}) has no record: 410 below the first record still present, else 404. */
    private Mono<Rejection> unknownIndex(String parameter, long index) {
        String hex = Long.toHexString(index);
        return replay.fromStart().next().map(ReplayedRequest::index)
                .filter(first -> index < first)
                .map(first -> new Rejection(HttpResponseStatus.GONE, parameter + "=" + hex + ": no record at that index: it lies before the first "
                        + "record still stored, " + Long.toHexString(first) + " (deleted by retention, or never written)"))
                .defaultIfEmpty(new Rejection(HttpResponseStatus.NOT_FOUND, parameter + "=" + hex + ": no record at that index"));
    }

    /** An error answer decided before the status line. */
    private record Rejection(HttpResponseStatus status, String message) {
    }

    private Publisher<Void> npy(String file, HttpServerResponse res) {
        if (!file.toLowerCase(Locale.ROOT).endsWith(".npy")) {
            return error(res, HttpResponseStatus.NOT_FOUND, "no such resource /requests/" + file + " (want /requests/<hex index>.npy)");
        }
        String hex = file.substring(0, file.length() - 4);
        long index = parseIndex(hex);
        if (index < 0) {
            return error(res, HttpResponseStatus.BAD_REQUEST, "bad index '" + hex + "' in /requests/" + file
                    + ": want /requests/<hex index>.npy (1 to 16 hex digits)");
        }
        return replay.at(index)
                .map(r -> Optional.of(npyBytes(r)))
                .onErrorResume(StoreException.class, e -> Mono.just(Optional.empty()))
                .flatMap(bytes -> bytes.isPresent()
                        ? Mono.from(res.header("content-type", "application/octet-stream").sendByteArray(Mono.just(bytes.get())))
                        : unknownIndex("index", index).flatMap(r -> Mono.from(error(res, r.status(), r.message()))));
    }

    static byte[] npyBytes(ReplayedRequest r) {
        RequestRouting routing = r.routing();
        byte[] header = NpyWriter.header(routing);
        ByteBuffer rows = routing.rows();
        byte[] out = new byte[header.length + rows.remaining()];
        System.arraycopy(header, 0, out, 0, header.length);
        rows.get(out, header.length, rows.remaining());
        return out;
    }

    static String jsonEscape(String s) {
        StringBuilder sb = new StringBuilder(s.length() + 8);
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == '"' || c == '\\') {
                sb.append('\\').append(c);
            } else if (c < 0x20) {
                sb.append(String.format("\\u%04x", (int) c));
            } else {
                sb.append(c);
            }
        }
        return sb.toString();
    }

    /** Stops the server and closes the store. */
    @Override
    public void close() {
        server.disposeNow();
        replay.close();
    }
}
