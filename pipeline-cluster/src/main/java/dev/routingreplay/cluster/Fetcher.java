package dev.routingreplay.cluster;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.sink.RequestRouting;
import io.netty.handler.codec.http.HttpHeaders;
import java.io.IOException;
import java.net.URLDecoder;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.TimeoutException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.CRC32C;
import reactor.core.publisher.Mono;
import reactor.netty.http.client.HttpClient;
import reactor.util.retry.Retry;

/**
 * Fetches an announced record (or its {@link Slice}) from the node's replay server with Reactor Netty's HTTP client and
 * checks it: the request id, the body checksum ({@code X-R3-Body-CRC32C}), for a whole record the writer's checksum
 * against the announcement's, and the {@code .npy} header against the announced shape. Connection failures, timeouts,
 * 502/503/504 and a body damaged on the way are retried with exponential backoff; a node that stays away past the
 * retries, or a refusal (4xx, 500) or a record that is not the announced one, fails with a {@link ClusterReadException}
 * naming the node and the request. Stateless apart from the client; any thread; never blocks.
 */
final class Fetcher {
    private static final Pattern SHAPE = Pattern.compile("'shape': \\((\\d+), (\\d+), (\\d+)\\)");
    private static final Pattern DESCR = Pattern.compile("'descr': '([^']+)'");

    private final HttpClient http;
    private final Slice slice;
    private final RetryPolicy retry;

    /**
     * How a fetch retries.
     *
     * @param attempts retries after the first try, 0 or more
     * @param firstBackoff the first wait; each next one doubles (with jitter) up to {@code maxBackoff}
     * @param maxBackoff the longest wait
     * @param responseTimeout the longest wait for a response to a fetch (the body included); a timeout is retried
     */
    record RetryPolicy(int attempts, Duration firstBackoff, Duration maxBackoff, Duration responseTimeout) {
    }

    /** Marks a failure that another try may fix. */
    private static final class Transient extends RuntimeException {
        private static final long serialVersionUID = 1L;

        Transient(String message) {
            super(message, null, false, false);
        }
    }

    Fetcher(HttpClient http, Slice slice, RetryPolicy retry) {
        this.http = http.responseTimeout(retry.responseTimeout());
        this.slice = slice;
        this.retry = retry;
    }

    /** The URL of {@code a}'s record with this fetcher's slice. */
    String url(Announcement a) {
        String path = a.ordinal() >= 0 ? "/requests/" + a.ordinal() + ".npy" : "/requests/index/" + Long.toHexString(a.index()) + ".npy";
        return a.node() + path + slice.query();
    }

    /** Fetches and checks {@code a}'s record; retries as the class says; signals the routing on a Netty thread. */
    Mono<RequestRouting> fetch(Announcement a) {
        String url = url(a);
        long started = System.nanoTime();
        return http.get().uri(url).responseSingle((res, body) -> {
            int code = res.status().code();
            if (code == 200) {
                return body.asByteArray().defaultIfEmpty(new byte[0]).map(bytes -> decode(a, res.responseHeaders(), bytes));
            }
            return body.asString(StandardCharsets.UTF_8).defaultIfEmpty("").flatMap(text -> {
                String reason = "HTTP " + code + " from " + url + ": " + text.strip();
                return Mono.error(code == 502 || code == 503 || code == 504 ? new Transient(reason)
                        : new ClusterReadException(a, reason, null));
            });
        }).retryWhen(Retry.backoff(retry.attempts(), retry.firstBackoff()).maxBackoff(retry.maxBackoff())
                .filter(Fetcher::transientFailure)
                .onRetryExhaustedThrow((spec, signal) -> new ClusterReadException(a, "the node stayed away: " + (signal.totalRetries() + 1)
                        + " tries over " + (System.nanoTime() - started) / 1_000_000 + " ms failed, the last with " + describe(signal.failure()),
                        signal.failure())))
                .onErrorMap(e -> !(e instanceof ClusterReadException), e -> new ClusterReadException(a, "fetch of " + url + " failed: "
                        + describe(e), e));
    }

    private static boolean transientFailure(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof Transient || t instanceof IOException || t instanceof TimeoutException
                    || t instanceof io.netty.handler.timeout.TimeoutException || t instanceof io.netty.channel.ConnectTimeoutException) {
                return true;
            }
        }
        return false;
    }

    private static String describe(Throwable e) {
        return e.getClass().getSimpleName() + (e.getMessage() == null ? "" : ": " + e.getMessage());
    }

    /** Checks an answer against the announcement and wraps its array as routing. */
    RequestRouting decode(Announcement a, HttpHeaders headers, byte[] body) {
        String id = headers.get("x-r3-request-id");
        if (id == null || !URLDecoder.decode(id.replace("+", "%2B"), StandardCharsets.UTF_8).equals(a.requestId())) {
            throw new ClusterReadException(a, "the node served request '" + id + "' at that address: not the announced record (was the "
                    + "node's store replaced?)", null);
        }
        CRC32C crc = new CRC32C();
        crc.update(body, 0, body.length);
        String bodyCrc = String.format("%08x", crc.getValue());
        if (!bodyCrc.equalsIgnoreCase(String.valueOf(headers.get("x-r3-body-crc32c")))) {
            throw new Transient("body checksum " + bodyCrc + " but the node sent X-R3-Body-CRC32C " + headers.get("x-r3-body-crc32c")
                    + " (damaged on the way)");
        }
        String rowsCrc = headers.get("x-r3-crc32c");
        if (a.crc32c() != null && !a.crc32c().equalsIgnoreCase(String.valueOf(rowsCrc))) {
            throw new ClusterReadException(a, "the node's record has checksum " + rowsCrc + ", the announcement says " + a.crc32c()
                    + ": not the announced record", null);
        }
        if (body.length < 10 || (body[0] & 0xFF) != 0x93) {
            throw new ClusterReadException(a, "the answer is not a .npy file (" + body.length + " bytes)", null);
        }
        ByteBuffer b = ByteBuffer.wrap(body).order(ByteOrder.LITTLE_ENDIAN);
        int headerEnd = body[6] == 1 ? 10 + (b.getShort(8) & 0xFFFF) : 12 + b.getInt(8);
        String header = new String(body, 0, Math.min(headerEnd, body.length), StandardCharsets.US_ASCII);
        Matcher shape = SHAPE.matcher(header);
        Matcher descr = DESCR.matcher(header);
        RoutingShape expected = a.shape();
        int layers = slice.layers(a.moeLayers());
        if (!shape.find() || !descr.find() || !descr.group(1).equals(expected.dtype().numpyDescr())
                || Integer.parseInt(shape.group(2)) != layers || Integer.parseInt(shape.group(3)) != a.topK()) {
            throw new ClusterReadException(a, "the node served an array of " + header.strip() + ", the announcement says " + a.dtype()
                    + " [" + a.seqLen() + ", " + a.moeLayers() + ", " + a.topK() + "] (" + layers + " layers asked)", null);
        }
        int rows = Integer.parseInt(shape.group(1));
        RoutingShape sliced = new RoutingShape(layers, a.topK(), a.numExperts());
        ByteBuffer array = ByteBuffer.wrap(body, headerEnd, body.length - headerEnd).slice();
        return new RequestRouting(a.requestId(), sliced, rows, array);
    }
}
