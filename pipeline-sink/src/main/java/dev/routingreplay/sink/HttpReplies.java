package dev.routingreplay.sink;

import io.netty.channel.EventLoop;
import io.netty.handler.codec.http.HttpResponseStatus;
import org.reactivestreams.Publisher;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;
import reactor.netty.http.server.HttpServerResponse;

/** How the replay server's routes answer: JSON and plain-text errors, on the connection's event loop. Stateless. */
final class HttpReplies {
    private HttpReplies() {
    }

    /** An error answer decided before the status line. */
    record Rejection(HttpResponseStatus status, String message) {
    }

    /** A JSON body, 200. */
    static Publisher<Void> json(HttpServerResponse res, String body) {
        return res.header("content-type", "application/json").sendString(Mono.just(body));
    }

    /** A plain-text error with {@code status}: one line naming what was wrong. */
    static Publisher<Void> error(HttpServerResponse res, HttpResponseStatus status, String message) {
        return res.status(status).header("content-type", "text/plain; charset=utf-8").sendString(Mono.just(message + "\n"));
    }

    /**
     * The connection's event loop as a scheduler, or null when the response has no connection. A response started or
     * completed on another thread (a replay reader's) races Netty's end of the previous response: on a kept-alive
     * connection the request after next could then go unanswered (seen with /manifest or a .npy, then two 404s;
     * {@code ReplayServerKeepAliveTest}). So every answer is started, and its body completed, on the event loop; the
     * reading and the producing of bytes stay on the replay readers.
     */
    static Scheduler loop(HttpServerResponse res) {
        EventLoop[] loop = new EventLoop[1];
        res.withConnection(c -> loop[0] = c.channel().eventLoop());
        return loop[0] == null ? Schedulers.immediate() : Schedulers.fromExecutor(loop[0]);
    }

    /** {@code mono}'s signals moved to the connection's event loop ({@link #loop}). */
    static <T> Mono<T> onLoop(Mono<T> mono, HttpServerResponse res) {
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

    /** {@code s} as the inside of a JSON string. */
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
}
