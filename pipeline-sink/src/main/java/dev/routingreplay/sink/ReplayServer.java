package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.sink.MissingReason;
import dev.routingreplay.core.sink.RequestRouting;
import io.netty.channel.EventLoop;
import io.netty.handler.codec.http.HttpMethod;
import io.netty.handler.codec.http.HttpResponseStatus;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.EnumMap;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BiFunction;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Schedulers;
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
    private static final String NPY = ".npy";
    private static final String ROUTES = "/requests/<ordinal>.npy, /requests/by-id/<url-encoded request id>.npy or "
            + "/requests/index/<hex index>.npy";

    private final RoutingReplay replay;
    private final RequestIndex index;
    private final Limits limits;
    private final byte[] tokenDigest;
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

    private ReplayServer(Path store, String host, int port, Limits limits, String token) {
        this.limits = limits;
        if (token != null && token.isEmpty()) {
            throw new IllegalArgumentException("the bearer token is empty; pass null for a server without one");
        }
        this.tokenDigest = token == null ? null : sha256(token.getBytes(StandardCharsets.UTF_8));
        this.replay = RoutingReplay.open(store);
        RequestIndex built = null;
        try {
            built = new RequestIndex(replay.queue(), replay.queuePath());
            this.index = built;
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

    private static Publisher<Void> json(HttpServerResponse res, String body) {
        return res.header("content-type", "application/json").sendString(Mono.just(body));
    }

    private static Publisher<Void> error(HttpServerResponse res, HttpResponseStatus status, String message) {
        return res.status(status).header("content-type", "text/plain; charset=utf-8").sendString(Mono.just(message + "\n"));
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
                route = (rq, rs) -> list(query, rs);
            } else if (raw.startsWith(BY_ID) && raw.indexOf('/', BY_ID.length()) < 0) {
                route = (rq, rs) -> npy(Address.parseId(raw.substring(BY_ID.length())), query, rs);
            } else if (path.startsWith(BY_INDEX) && path.indexOf('/', BY_INDEX.length()) < 0) {
                route = (rq, rs) -> npy(Address.parseIndex(path.substring(BY_INDEX.length())), query, rs);
            } else if (path.startsWith(REQUESTS) && path.indexOf('/', REQUESTS.length()) < 0) {
                route = (rq, rs) -> npy(Address.parseOrdinal(path.substring(REQUESTS.length())), query, rs);
            } else {
                return error(res, HttpResponseStatus.NOT_FOUND, "no such resource " + path + " (the server has /health, /manifest, "
                        + "/requests, " + ROUTES + ")");
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

    private Publisher<Void> list(QueryParams q, HttpServerResponse res) {
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
                        : unknownIndex("after", cursor).map(Optional::of));
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
     * The connection's event loop as a scheduler, or null when the response has no connection. A response started or
     * completed on another thread (a replay reader's) races Netty's end of the previous response: on a kept-alive
     * connection the request after next could then go unanswered (seen with /manifest or a .npy, then two 404s;
     * {@code ReplayServerKeepAliveTest}). So every answer is started, and its body completed, on the event loop; the
     * reading and the producing of bytes stay on the replay readers.
     */
    private static reactor.core.scheduler.Scheduler loop(HttpServerResponse res) {
        EventLoop[] loop = new EventLoop[1];
        res.withConnection(c -> loop[0] = c.channel().eventLoop());
        return loop[0] == null ? Schedulers.immediate() : Schedulers.fromExecutor(loop[0]);
    }

    /** {@code mono}'s signals moved to the connection's event loop ({@link #loop}). */
    private static <T> Mono<T> onLoop(Mono<T> mono, HttpServerResponse res) {
        return mono.publishOn(loop(res));
    }

    /** A record index in hex (1 to 16 digits, not negative), or -1 when {@code text} is not one. */
    static long parseHex(String text) {
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
        return Mono.fromCallable(() -> unknownIndexNow(parameter, index)).subscribeOn(ReplayCursor.READERS);
    }

    private Rejection unknownIndexNow(String parameter, long at) {
        String hex = Long.toHexString(at);
        long first = -1;
        try (var tailer = replay.queue().createTailer()) {
            tailer.toStart();
            try (var dc = tailer.readingDocument()) {
                if (dc.isPresent()) {
                    first = dc.index();
                    dc.rollbackOnClose();
                }
            }
        }
        if (first >= 0 && at < first) {
            return new Rejection(HttpResponseStatus.GONE, parameter + "=" + hex + ": no record at that index: it lies before the first "
                    + "record still stored, " + Long.toHexString(first) + " (deleted by retention, or never written)");
        }
        return new Rejection(HttpResponseStatus.NOT_FOUND, parameter + "=" + hex + ": no record at that index");
    }

    /** An error answer decided before the status line. */
    private record Rejection(HttpResponseStatus status, String message) {
    }

    /** A record found for an address, with its ordinal. */
    private record Found(RoutingReplay.Stored stored, long ordinal) {
    }

    /** How a {@code .npy} route names its record: an ordinal, a Chronicle index or a request id. */
    private record Address(Kind kind, long number, String id, String bad) {
        enum Kind { ORDINAL, INDEX, ID }

        static Address bad(String message) {
            return new Address(null, -1, null, message);
        }

        static Address parseOrdinal(String file) {
            if (!file.toLowerCase(Locale.ROOT).endsWith(NPY)) {
                return bad("404 no such resource /requests/" + file + " (want " + ROUTES + ")");
            }
            String stem = file.substring(0, file.length() - NPY.length());
            if (!stem.matches("[0-9]{1,18}")) {
                return bad("400 bad ordinal '" + stem + "' in /requests/" + file + ": want /requests/<ordinal>.npy with the ordinal a whole "
                        + "number 0 or more (the ordinal field of /requests; a hex index goes to /requests/index/<hex>.npy, a "
                        + "request id to /requests/by-id/<url-encoded id>.npy)");
            }
            return new Address(Kind.ORDINAL, Long.parseLong(stem), null, null);
        }

        static Address parseIndex(String file) {
            if (!file.toLowerCase(Locale.ROOT).endsWith(NPY)) {
                return bad("404 no such resource /requests/index/" + file + " (want /requests/index/<hex index>.npy)");
            }
            String hex = file.substring(0, file.length() - NPY.length());
            long at = parseHex(hex);
            if (at < 0) {
                return bad("400 bad index '" + hex + "' in /requests/index/" + file + ": want /requests/index/<hex index>.npy "
                        + "(1 to 16 hex digits, the index field of /requests)");
            }
            return new Address(Kind.INDEX, at, null, null);
        }

        static Address parseId(String rawFile) {
            if (!rawFile.endsWith(NPY) || rawFile.length() == NPY.length()) {
                return bad("404 no such resource /requests/by-id/" + rawFile + " (want /requests/by-id/<url-encoded request id>.npy)");
            }
            String encoded = rawFile.substring(0, rawFile.length() - NPY.length());
            String id = PathSegments.decode(encoded);
            if (id == null) {
                return bad("400 bad request id '" + encoded + "' in /requests/by-id/: want the id percent-encoded as UTF-8 "
                        + "(%XX for every byte outside A-Z a-z 0-9 - . _ ~), e.g. urllib.parse.quote(id, safe='')");
            }
            return new Address(Kind.ID, -1, id, null);
        }

        String describe() {
            switch (kind) {
                case ORDINAL:
                    return "ordinal " + number;
                case INDEX:
                    return "index " + Long.toHexString(number);
                default:
                    return "request id '" + id + "'";
            }
        }
    }

    private Publisher<Void> npy(Address address, QueryParams query, HttpServerResponse res) {
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
            Resolved found = resolve(address);
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

    /** A record found, or why not. */
    private record Resolved(Found found, Rejection rejection) {
        static Resolved of(Rejection r) {
            return new Resolved(null, r);
        }
    }

    /** What a replay reader found for a {@code .npy} route, handed to the event loop to send. */
    private record Answer(Resolved resolved, Prepared prepared) {
    }

    /**
     * The body to send and the missing rows it holds, or the 400 of a start past the record's end, or the 409 of a
     * native answer that would hold a missing row.
     */
    private record Prepared(NpyBody body, int crc, int missingRows, String missingReasons, Rejection rejection) {
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
        return new Prepared(body, body.crc32c(), routing.missingRowsIn(options.start(), end), reasonsHeader(routing, options.start(), end), null);
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

    /** Finds the record of {@code address} (on a replay reader's thread). */
    private Resolved resolve(Address address) {
        try {
            switch (address.kind()) {
                case ORDINAL:
                    return byOrdinal(address.number());
                case INDEX:
                    RoutingReplay.Stored s = replay.readAt(address.number());
                    return s == null ? Resolved.of(unknownIndexNow("index", address.number()))
                            : new Resolved(new Found(s, index.ordinalOf(s.index())), null);
                default:
                    return byId(address.id());
            }
        } catch (StoreException e) {
            return Resolved.of(new Rejection(HttpResponseStatus.INTERNAL_SERVER_ERROR, address.describe() + ": the stored record is damaged, "
                    + "nothing of it is served: " + e.problem()));
        }
    }

    private Resolved byOrdinal(long ordinal) {
        RequestIndex.Found f = index.byOrdinal(ordinal);
        if (f.where() == RequestIndex.Where.STORED) {
            RoutingReplay.Stored s = replay.readAt(f.index());
            if (s != null) {
                return new Resolved(new Found(s, ordinal), null);
            }
            index.refreshNow();
            f = RequestIndex.Found.DELETED;
        }
        long first = index.firstOrdinal();
        long last = index.lastOrdinal();
        if (f.where() == RequestIndex.Where.DELETED) {
            return Resolved.of(new Rejection(HttpResponseStatus.GONE, "ordinal " + ordinal + ": no record: it lies before the first record "
                    + "still stored, ordinal " + first + " (deleted by retention)"));
        }
        return Resolved.of(new Rejection(HttpResponseStatus.NOT_FOUND, "ordinal " + ordinal + ": no record with that ordinal ("
                + (last < 0 ? "the store holds no record yet" : "the store holds ordinals " + first + " to " + last) + ")"));
    }

    private Resolved byId(String id) {
        boolean deleted = false;
        for (long ordinal : index.byId(id)) {
            RequestIndex.Found f = index.byOrdinal(ordinal);
            if (f.where() != RequestIndex.Where.STORED) {
                deleted |= f.where() == RequestIndex.Where.DELETED;
                continue;
            }
            RoutingReplay.Stored s = replay.readAt(f.index());
            if (s == null) {
                deleted = true;
            } else if (s.header().requestId().equals(id)) {
                return new Resolved(new Found(s, ordinal), null);
            }
        }
        String shown = jsonEscape(id);
        if (deleted) {
            return Resolved.of(new Rejection(HttpResponseStatus.GONE, "request id '" + shown + "': no record stored: its records were "
                    + "deleted by retention"));
        }
        return Resolved.of(new Rejection(HttpResponseStatus.NOT_FOUND, "request id '" + shown + "': no record with that id"));
    }

    /**
     * One listing line: index, ordinal, id, round, seqLen, missingRows, missingReasons (count per reason) and, when a
     * newer record of the same id exists (what by-id fetches), {@code supersededBy} with its ordinal.
     */
    private String listingLine(ReplayedRequest r) {
        long ordinal = index.ordinalOf(r.index());
        long newer = supersededBy(r.routing().requestId(), ordinal);
        return "{\"index\":\"" + Long.toHexString(r.index()) + "\",\"ordinal\":" + ordinal + ",\"requestId\":\""
                + jsonEscape(r.routing().requestId()) + "\",\"round\":" + r.round() + ",\"seqLen\":" + r.routing().seqLen()
                + ",\"missingRows\":" + r.routing().missingRowCount() + ",\"missingReasons\":" + reasonsJson(r.routing(), 0, r.routing().seqLen())
                + (newer >= 0 ? ",\"supersededBy\":" + newer : "") + "}\n";
    }

    /** The ordinal of the newest record with id {@code id} newer than {@code ordinal}, or -1 (reads only hash matches). */
    private long supersededBy(String id, long ordinal) {
        for (long candidate : index.byId(id)) {
            if (candidate <= ordinal) {
                return -1;
            }
            RequestIndex.Found f = index.byOrdinal(candidate);
            if (f.where() == RequestIndex.Where.STORED) {
                RoutingReplay.Stored s = replay.readAt(f.index());
                if (s != null && s.header().requestId().equals(id)) {
                    return candidate;
                }
            }
        }
        return -1;
    }

    /** {@code {"reason":count,...}} of the missing rows among positions {@code [from, to)}, in reason order. */
    static String reasonsJson(RequestRouting routing, int from, int to) {
        StringBuilder b = new StringBuilder("{");
        for (Map.Entry<MissingReason, Integer> e : reasonCounts(routing, from, to).entrySet()) {
            b.append(b.length() > 1 ? "," : "").append('"').append(e.getKey().label()).append("\":").append(e.getValue());
        }
        return b.append('}').toString();
    }

    /** {@code reason=count,...} of the missing rows among positions {@code [from, to)} (empty when none), for a header. */
    static String reasonsHeader(RequestRouting routing, int from, int to) {
        StringBuilder b = new StringBuilder();
        for (Map.Entry<MissingReason, Integer> e : reasonCounts(routing, from, to).entrySet()) {
            b.append(b.length() > 0 ? "," : "").append(e.getKey().label()).append('=').append(e.getValue());
        }
        return b.toString();
    }

    private static Map<MissingReason, Integer> reasonCounts(RequestRouting routing, int from, int to) {
        Map<MissingReason, Integer> counts = new EnumMap<>(MissingReason.class);
        if (routing.missingRowCount() > 0) {
            for (int p = from; p < to; p++) {
                MissingReason why = routing.missingReason(p);
                if (why != null) {
                    counts.merge(why, 1, Integer::sum);
                }
            }
        }
        return counts;
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
        index.close();
        replay.close();
    }
}
