package dev.routingreplay.sink;

import static dev.routingreplay.sink.HttpReplies.error;
import static dev.routingreplay.sink.HttpReplies.json;
import static dev.routingreplay.sink.HttpReplies.onLoop;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.sink.RecordLookup.Address;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpResponseStatus;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BiFunction;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Mono;
import reactor.netty.DisposableServer;
import reactor.netty.http.server.HttpServer;
import reactor.netty.http.server.HttpServerRequest;
import reactor.netty.http.server.HttpServerResponse;

/**
 * Serves a store's finished requests over HTTP (Reactor Netty), for trainers that are not on the JVM:
 * <ul>
 *   <li>{@code GET /health}: {@code {"status":"ok"}}; the only route that needs no token;</li>
 *   <li>{@code GET /manifest}: the store's shape, dtype, store format, how a missing row is served ({@code missingAs}:
 *       -1, in the dtypes of {@code missingDtypes}), slot capacity and the ordinals of the first and last record
 *       stored, as JSON;</li>
 *   <li>{@code GET /requests[?after=HEX][&limit=N][&follow=true]}: one JSON line per record ({@code index},
 *       {@code ordinal}, {@code requestId}, {@code round}, {@code seqLen}, {@code missingRows}), NDJSON, in queue order; with
 *       {@code follow=true} the response stays open and new records are sent as they are written; a damaged record is a
 *       line {@code {"index","ordinal","damaged":true,"reason"}} and the listing goes on, records lost other than by
 *       retention end a finite listing with {@code {"lost":true,"reason"}}, and any all-digit {@code limit} is
 *       clamped to {@code Long.MAX_VALUE};</li>
 *   <li>one record as a numpy {@code .npy} file ({@code numpy.load(io.BytesIO(body))}), addressed three ways:
 *       {@code GET /requests/<ordinal>.npy} (0, 1, 2, ... in write order, stable across restarts and retention),
 *       {@code GET /requests/by-id/<request id, percent-encoded as one path segment>.npy} (the newest record with that
 *       id) and {@code GET /requests/index/<hex Chronicle index>.npy}; each takes the {@link FetchOptions} query
 *       ({@code start}, {@code layers}, {@code drop_last}, {@code dtype}), applied here so only the asked bytes move.</li>
 * </ul>
 * A {@code .npy} answer carries {@code X-R3-Request-Id} (percent-encoded), {@code X-R3-Index}, {@code X-R3-Ordinal},
 * {@code X-R3-Round}, {@code X-R3-Seq-Len} (the record's), {@code X-R3-Missing-Rows} (missing rows in the rows served),
 * {@code X-R3-Missing-Reasons} ({@code reason=count,...} of those rows, empty when none),
 * {@code X-R3-Body-CRC32C} (CRC32C of this response's whole body, 8 hex digits) and, for records written with one
 * (record version 3 and later), {@code X-R3-CRC32C}: the checksum of the record's full rows in the stored dtype,
 * computed by the writer; a whole-record native answer's array bytes have exactly it. A missing row is -1 in every id
 * in {@code int16}/{@code int32}/{@code int64}; a native answer whose rows include a missing one is refused with 409
 * naming the count and those dtypes (the stored dtype has no value for "missing").
 *
 * <p>With a bearer token ({@link #start(Path, String, int, Limits, String)}) every route but {@code /health} answers 401
 * with {@code WWW-Authenticate: Bearer} to a request without {@code Authorization: Bearer <token>}, or with another
 * token (compared in constant time, over SHA-256 digests; the token is never logged or echoed), before anything else.
 *
 * <p>Reads happen on the replay's own threads, never on Netty's event loop. Every parameter and cursor is checked before
 * the status line, so a 200 always means a well-formed answer follows. Errors are plain text naming the parameter and
 * value (never the store's path): 400 for a malformed or out-of-range parameter, 409 for a native answer that would
 * hold a missing row, 404 for an ordinal, index or id with no record, 410 for one below the first record still stored (deleted by retention), 500 for a record that fails its
 * checksum, 404 for an unknown path, and 405 (with {@code Allow: GET}) for a method other than GET on any route. Live
 * followers are bounded ({@link Limits#maxFollowers}: 503 with {@code Retry-After} past it), and a connection whose
 * request does not arrive within {@link Limits#idleTimeout} is closed, slow-loris clients included.
 */
public final class ReplayServer implements AutoCloseable {
    private static final String REQUESTS = "/requests/";
    private static final String BY_ID = "/requests/by-id/";
    private static final String BY_INDEX = "/requests/index/";

    private final RoutingReplay replay;
    private final RequestIndex index;
    private final byte[] tokenDigest;
    private final AtomicInteger followers = new AtomicInteger();
    private final ListingRoute listing;
    private final NpyRoute npy;
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

    private ReplayServer(Path store, String host, int port, Limits limits, String token) {
        if (token != null && token.isEmpty()) {
            throw new IllegalArgumentException("the bearer token is empty; pass null for a server without one");
        }
        this.tokenDigest = token == null ? null : sha256(token.getBytes(StandardCharsets.UTF_8));
        this.replay = RoutingReplay.open(store);
        RequestIndex built = null;
        try {
            built = new RequestIndex(replay.queue(), replay.queuePath());
            this.index = built;
            RecordLookup lookup = new RecordLookup(replay, built);
            this.listing = new ListingRoute(replay, built, lookup, limits, followers);
            this.npy = new NpyRoute(replay, lookup);
            // Reactor Netty's idle timeout watches decoded requests, not bytes: a request dribbled byte by byte is
            // closed at the timeout too (ReplayServerHygieneTest)
            this.server = HttpServer.create().host(host).port(port)
                    .idleTimeout(limits.idleTimeout())
                    .route(routes -> routes.route(req -> true, this::dispatch))
                    .bindNow();
        } catch (RuntimeException e) {
            if (built != null) {
                built.close();
            }
            replay.close();
            throw e;
        }
    }

    /**
     * Starts serving the store at {@code store} on {@code host:port} (port 0 picks a free one) with {@link Limits#DEFAULT}
     * and no token.
     *
     * @throws StoreException naming the path when it is not a readable store
     */
    public static ReplayServer start(Path store, String host, int port) {
        return start(store, host, port, Limits.DEFAULT);
    }

    /**
     * Starts serving the store at {@code store} on {@code host:port} (port 0 picks a free one) with {@code limits} and no
     * token.
     *
     * @throws StoreException naming the path when it is not a readable store
     */
    public static ReplayServer start(Path store, String host, int port, Limits limits) {
        return new ReplayServer(store, host, port, limits, null);
    }

    /**
     * Starts serving as {@link #start(Path, String, int, Limits)}, requiring {@code Authorization: Bearer <bearerToken>}
     * on every route but {@code /health} when {@code bearerToken} is not null.
     *
     * @throws IllegalArgumentException when {@code bearerToken} is empty
     * @throws StoreException naming the path when it is not a readable store
     */
    public static ReplayServer start(Path store, String host, int port, Limits limits, String bearerToken) {
        return new ReplayServer(store, host, port, limits, bearerToken);
    }

    /** Live {@code follow=true} responses now. */
    public int followers() {
        return followers.get();
    }

    /** The port the server listens on. */
    public int port() {
        return server.port();
    }

    /** The index of ordinals and ids (for tests). */
    RequestIndex index() {
        return index;
    }

    private String manifestJson() {
        StoreManifest m = replay.manifest();
        RoutingShape s = m.shape();
        long last = index.lastOrdinal();
        long first = last < 0 ? -1 : index.firstOrdinal();
        StringBuilder dtypes = new StringBuilder();
        for (FetchOptions.Dtype d : FetchOptions.missingDtypes(s)) {
            dtypes.append(dtypes.length() == 0 ? "\"" : ",\"").append(d.wireName()).append('"');
        }
        return "{\"moeLayers\":" + s.moeLayers() + ",\"topK\":" + s.topK() + ",\"numExperts\":" + s.numExperts() + ",\"dtype\":\""
                + m.dtype().numpyName() + "\",\"storeFormat\":" + m.format() + ",\"missingAs\":-1,\"missingDtypes\":[" + dtypes
                + "],\"slotCapacity\":" + m.slotCapacity() + ",\"firstOrdinal\":" + first + ",\"lastOrdinal\":" + last + "}";
    }

    /** Checks the token, routes by path, then checks the method, so every route answers 405 to a method other than GET. */
    private Publisher<Void> dispatch(HttpServerRequest req, HttpServerResponse res) {
        QueryParams query = QueryParams.of(req.uri());
        String path = query.path();
        String raw = query.rawPath();
        BiFunction<HttpServerRequest, HttpServerResponse, Publisher<Void>> route;
        if (path.equals("/health")) {
            route = (rq, rs) -> json(rs, "{\"status\":\"ok\"}");
        } else {
            String refused = authorize(req.requestHeaders().get("authorization"));
            if (refused != null) {
                res.header("www-authenticate", refused.startsWith("invalid") ? "Bearer realm=\"r3\", error=\"invalid_token\""
                        : "Bearer realm=\"r3\"");
                return error(res, HttpResponseStatus.UNAUTHORIZED, refused);
            }
            if (path.equals("/manifest")) {
                route = (rq, rs) -> onLoop(Mono.fromCallable(this::manifestJson).subscribeOn(ReplayCursor.READERS), rs)
                        .flatMap(body -> Mono.from(json(rs, body)));
            } else if (path.equals("/requests")) {
                route = (rq, rs) -> listing.list(query, rs);
            } else if (raw.startsWith(BY_ID) && raw.indexOf('/', BY_ID.length()) < 0) {
                route = (rq, rs) -> npy.npy(Address.parseId(raw.substring(BY_ID.length())), query, rs);
            } else if (path.startsWith(BY_INDEX) && path.indexOf('/', BY_INDEX.length()) < 0) {
                route = (rq, rs) -> npy.npy(Address.parseIndex(path.substring(BY_INDEX.length())), query, rs);
            } else if (path.startsWith(REQUESTS) && path.indexOf('/', REQUESTS.length()) < 0) {
                route = (rq, rs) -> npy.npy(Address.parseOrdinal(path.substring(REQUESTS.length())), query, rs);
            } else {
                return error(res, HttpResponseStatus.NOT_FOUND, "no such resource " + path + " (the server has /health, /manifest, "
                        + "/requests, " + RecordLookup.ROUTES + ")");
            }
        }
        if (!HttpMethod.GET.equals(req.method())) {
            res.header("allow", "GET");
            return error(res, HttpResponseStatus.METHOD_NOT_ALLOWED, "method " + req.method().name() + " is not allowed on " + path
                    + "; use GET");
        }
        return route.apply(req, res);
    }

    /** Null when the request may pass, else why not (never quoting the token). */
    private String authorize(String authorization) {
        if (tokenDigest == null) {
            return null;
        }
        if (authorization == null || !authorization.regionMatches(true, 0, "Bearer ", 0, 7)) {
            return "missing bearer token: this server requires the header Authorization: Bearer <token> (the token of its "
                    + "--token-file or R3_TOKEN)";
        }
        byte[] given = sha256(authorization.substring(7).strip().getBytes(StandardCharsets.UTF_8));
        return MessageDigest.isEqual(given, tokenDigest) ? null : "invalid bearer token: the Authorization header does not carry this "
                + "server's token";
    }

    private static byte[] sha256(byte[] bytes) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(bytes);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException("the JDK has no SHA-256", e);
        }
    }

    /** Stops the server and closes the store. */
    @Override
    public void close() {
        server.disposeNow();
        index.close();
        replay.close();
    }
}
