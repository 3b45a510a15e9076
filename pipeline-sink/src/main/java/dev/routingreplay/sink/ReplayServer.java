package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.sink.RequestRouting;
import io.netty.handler.codec.http.HttpResponseStatus;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Locale;
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
 * Reads happen on the replay's own threads, never on Netty's event loop. Errors are plain-text 400/404 naming the
 * parameter or index.
 */
public final class ReplayServer implements AutoCloseable {
    private final RoutingReplay replay;
    private final DisposableServer server;

    private ReplayServer(Path store, String host, int port) {
        this.replay = RoutingReplay.open(store);
        try {
            this.server = HttpServer.create().host(host).port(port)
                    .route(routes -> routes
                            .get("/manifest", (req, res) -> json(res, manifestJson()))
                            .get("/requests", this::list)
                            .get("/requests/{file}", this::npy))
                    .bindNow();
        } catch (RuntimeException e) {
            replay.close();
            throw e;
        }
    }

    /**
     * Starts serving the store at {@code store} on {@code host:port} (port 0 picks a free one).
     *
     * @throws StoreException naming the path when it is not a readable store
     */
    public static ReplayServer start(Path store, String host, int port) {
        return new ReplayServer(store, host, port);
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

    private Publisher<Void> list(HttpServerRequest req, HttpServerResponse res) {
        QueryParams q = QueryParams.of(req.uri());
        long after;
        long limit;
        try {
            after = q.get("after") == null ? -1 : Long.parseLong(q.get("after"), 16);
            limit = q.get("limit") == null ? Long.MAX_VALUE : Long.parseLong(q.get("limit"));
            if (limit < 0) {
                throw new NumberFormatException("negative");
            }
        } catch (NumberFormatException e) {
            return error(res, HttpResponseStatus.BAD_REQUEST, "bad query " + req.uri() + ": after must be a hex index, limit a count");
        }
        boolean follow = "true".equals(q.get("follow"));
        Flux<ReplayedRequest> records;
        if (after >= 0) {
            records = follow ? replay.afterThenLive(after) : replay.after(after);
        } else {
            records = follow ? replay.fromStartThenLive() : replay.fromStart();
        }
        Flux<String> lines = records.take(limit).map(r -> "{\"index\":\"" + Long.toHexString(r.index()) + "\",\"requestId\":\""
                + jsonEscape(r.routing().requestId()) + "\",\"round\":" + r.round() + ",\"seqLen\":" + r.routing().seqLen() + "}\n");
        return res.header("content-type", "application/x-ndjson").sendString(lines);
    }

    private Publisher<Void> npy(HttpServerRequest req, HttpServerResponse res) {
        String file = req.param("file");
        if (file == null || !file.toLowerCase(Locale.ROOT).endsWith(".npy")) {
            return error(res, HttpResponseStatus.NOT_FOUND, "no such resource " + req.uri() + " (want /requests/<hex index>.npy)");
        }
        long index;
        try {
            index = Long.parseLong(file.substring(0, file.length() - 4), 16);
        } catch (NumberFormatException e) {
            return error(res, HttpResponseStatus.BAD_REQUEST, "bad index '" + file + "': want /requests/<hex index>.npy");
        }
        return replay.at(index)
                .map(ReplayServer::npyBytes)
                .flatMap(bytes -> Mono.from(res.header("content-type", "application/octet-stream").sendByteArray(Mono.just(bytes))))
                .onErrorResume(StoreException.class, e -> Mono.from(error(res, HttpResponseStatus.NOT_FOUND, e.getMessage())));
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
