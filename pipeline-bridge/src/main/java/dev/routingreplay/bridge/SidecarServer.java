package dev.routingreplay.bridge;

import dev.routingreplay.core.device.InterprocessDevice;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFutureListener;
import io.netty.channel.ChannelOption;
import java.net.UnixDomainSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;
import org.reactivestreams.Publisher;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Sinks;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;
import reactor.netty.Connection;
import reactor.netty.DisposableServer;
import reactor.netty.NettyInbound;
import reactor.netty.NettyOutbound;
import reactor.netty.resources.LoopResources;
import reactor.netty.tcp.TcpServer;

/**
 * The sidecar's server: a Reactor Netty {@link TcpServer} on a Unix domain socket (NIO transport with
 * {@link UnixDomainSocketAddress}, Java 16+), speaking the engine bridge protocol (docs/engine-bridge.md) to one
 * engine at a time. Each engine connection is an engine session with its own capture pipeline over the server's one
 * sink ({@link SinkFactory}), fed on the session's own thread.
 *
 * <p>Guarantees: a second engine that connects while one is connected is answered FAILED code 4 (busy) and closed;
 * a session's slot is free once its pipeline released its ring, just before FAREWELL is sent (so an engine may
 * reconnect right after FAREWELL). A stale socket file is removed when the server binds (a file that is not a socket,
 * or a socket another process listens on, is refused); the socket file is removed by {@link #close()}. Progress lines
 * (steps, tokens, finished requests, feed wait) go to the log every {@link Builder#progressInterval}; each session
 * ends with one summary line and a {@link SessionSummary} on {@link #sessions()}.
 *
 * <p>Threads: one Netty event loop ({@code r3-sidecar-*}) reads and decodes; each session feeds on
 * {@code r3-sidecar-feed-N}; progress lines come from {@code r3-sidecar-progress}. No blocking call runs on the event
 * loop: whatever may wait (the ring, the store, the end of a session) runs on the feed thread. {@link #close()} blocks
 * and may be called from any thread but a session's feed thread and the server's event loop.
 */
public final class SidecarServer implements AutoCloseable {
    private final Settings settings;
    private final Path socket;
    private final SharedSink sink;
    private final LoopResources loops;
    private final DisposableServer server;
    private final Scheduler progressThread;
    private final Disposable progress;
    private final AtomicReference<EngineSession> active = new AtomicReference<>();
    private final AtomicLong sessionIds = new AtomicLong();
    private final Sinks.Many<SessionSummary> summaries = Sinks.many().multicast().directBestEffort();
    private final AtomicBoolean closed = new AtomicBoolean();
    private volatile boolean closing;

    /** What every session of a server shares. */
    record Settings(InterprocessDevice device, Backend backend, int deviceOrdinal, int ringDepth, String storeName, Consumer<String> log,
            Duration closeTimeout, Consumer<SessionSummary> onSessionEnd) {
    }

    private SidecarServer(Builder b) {
        this.settings = new Settings(b.device, Backend.of(b.device), b.deviceOrdinal, b.ringDepth, b.storeName, b.log, b.closeTimeout,
                b.onSessionEnd);
        this.socket = b.socket;
        this.sink = new SharedSink(b.sinks);
        SocketFile.prepare(socket);
        this.loops = LoopResources.create("r3-sidecar", 1, 1, true);
        try {
            this.server = TcpServer.create()
                    .runOn(loops, false) // NIO: java.nio's Unix domain sockets, no native transport needed
                    .bindAddress(() -> UnixDomainSocketAddress.of(socket))
                    // a write to an engine that has gone must not close the channel before what it sent was read
                    .childOption(ChannelOption.AUTO_CLOSE, false)
                    .doOnConnection(c -> c.addHandlerLast("r3-frames", FrameCodec.frameDecoder())
                            .addHandlerLast("r3-messages", new EngineMessageDecoder()))
                    .handle(this::connected)
                    .bindNow(Duration.ofSeconds(10));
        } catch (RuntimeException e) {
            loops.disposeLater().block(Duration.ofSeconds(5));
            throw new IllegalStateException("cannot listen on socket " + socket + ": " + e.getMessage(), e);
        }
        this.progressThread = Schedulers.newSingle("r3-sidecar-progress", true);
        long every = b.progressInterval.toMillis();
        this.progress = progressThread.schedulePeriodically(this::logProgress, every, every, TimeUnit.MILLISECONDS);
    }

    /** A builder; {@link Builder#bind()} starts listening. */
    public static Builder builder() {
        return new Builder();
    }

    /** The socket's path. */
    public Path socket() {
        return socket;
    }

    /**
     * Each session's summary as it ends (after its data is stored and its buffers closed), on the session's feed
     * thread; completes when the server is closed. Hot: a subscriber sees the sessions that end after it subscribed,
     * and one without demand misses them.
     */
    public Flux<SessionSummary> sessions() {
        return summaries.asFlux();
    }

    /** Whether an engine session is running now. */
    public boolean hasSession() {
        return active.get() != null;
    }

    private Publisher<Void> connected(NettyInbound in, NettyOutbound out) {
        AtomicReference<Connection> conn = new AtomicReference<>();
        in.withConnection(conn::set);
        Channel channel = conn.get().channel();
        long id = sessionIds.incrementAndGet();
        if (closing) {
            return refuse(conn.get(), id, "the sidecar is shutting down");
        }
        EngineSession session = new EngineSession(id, channel, settings, sink, this::ended);
        EngineSession current = active.compareAndExchange(null, session);
        if (current != null) {
            session.discard();
            return refuse(conn.get(), id, "busy: engine session " + current.id() + " is connected, and the sidecar serves one engine at a time");
        }
        Mono<Void> end = session.start(in.receiveObject());
        if (closing) {
            session.shutdown();
        }
        return end;
    }

    private Mono<Void> refuse(Connection connection, long id, String why) {
        settings.log().accept("connection " + id + " refused: " + why);
        Channel channel = connection.channel();
        ByteBuf out = channel.alloc().ioBuffer();
        FrameCodec.encode(new SidecarMessage.Failed(FailureCode.BUSY.code(), why), out);
        channel.writeAndFlush(out).addListener(ChannelFutureListener.CLOSE);
        return connection.onDispose();
    }

    private void ended(EngineSession session, SessionSummary summary) {
        active.compareAndSet(session, null);
        try {
            settings.onSessionEnd().accept(summary);
        } finally {
            summaries.tryEmitNext(summary);
        }
    }

    private void logProgress() {
        EngineSession s = active.get();
        String line = s == null ? null : s.progress();
        if (line != null) {
            settings.log().accept(line);
        }
    }

    /**
     * Stops accepting engines; ends a running session (its engine is answered FAILED code 4 "shutting down" after the
     * messages being fed now, and everything fed is stored), waiting up to the close timeout; closes the sink; stops
     * the event loop; removes the socket file. Idempotent.
     *
     * @throws IllegalStateException when the sink's close failed (the rest is closed anyway)
     */
    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        closing = true;
        long deadline = System.nanoTime() + settings.closeTimeout().toNanos();
        EngineSession s;
        while ((s = active.get()) != null && System.nanoTime() < deadline) {
            s.shutdown();
            if (!s.awaitEnd(Duration.ofNanos(Math.max(1, deadline - System.nanoTime())))) {
                settings.log().accept("session " + s.id() + " did not end within " + settings.closeTimeout().toMillis() + " ms; closing anyway");
            }
        }
        RuntimeException failure = null;
        try {
            server.disposeNow(Duration.ofSeconds(5));
        } catch (RuntimeException e) {
            failure = e;
        }
        progress.dispose();
        progressThread.dispose();
        try {
            sink.close();
        } catch (Exception e) {
            failure = new IllegalStateException("closing the store failed: " + e.getMessage(), e);
        }
        try {
            loops.disposeLater(Duration.ZERO, Duration.ofSeconds(5)).block(Duration.ofSeconds(10));
        } catch (RuntimeException e) {
            failure = failure == null ? e : failure;
        }
        if (!SocketFile.remove(socket)) {
            settings.log().accept("socket " + socket + " could not be removed");
        }
        summaries.tryEmitComplete();
        if (failure != null) {
            throw failure;
        }
    }

    /** Configures and binds a {@link SidecarServer}; every setter validates its argument. Not thread-safe. */
    public static final class Builder {
        private static final Logger LOG = LoggerFactory.getLogger(SidecarServer.class);
        private Path socket;
        private InterprocessDevice device;
        private SinkFactory sinks;
        private int deviceOrdinal;
        private int ringDepth = 4;
        private String storeName = "";
        private Duration progressInterval = Duration.ofSeconds(5);
        private Duration closeTimeout = Duration.ofSeconds(60);
        private Consumer<String> log = LOG::info;
        private Consumer<SessionSummary> onSessionEnd = summary -> { };

        private Builder() {
        }

        /** The socket's path (required): 1 to 107 bytes; a stale socket there is replaced, anything else refused. */
        public Builder socket(Path socket) {
            this.socket = Objects.requireNonNull(socket, "socket");
            return this;
        }

        /** The device the engine's buffers are opened on (required); its kind is the backend HELLO must announce. */
        public Builder device(InterprocessDevice device) {
            this.device = Objects.requireNonNull(device, "device");
            return this;
        }

        /** Opens the sink at the first HELLO (required). */
        public Builder sinks(SinkFactory sinks) {
            this.sinks = Objects.requireNonNull(sinks, "sinks");
            return this;
        }

        /** The CUDA device ordinal HELLO must announce (default 0; on the host backend HELLO's device is 0 or -1). */
        public Builder deviceOrdinal(int deviceOrdinal) {
            if (deviceOrdinal < 0) {
                throw new IllegalArgumentException("deviceOrdinal must not be negative, was " + deviceOrdinal);
            }
            this.deviceOrdinal = deviceOrdinal;
            return this;
        }

        /** Each session's pipeline's ring depth, 1 to 1024 (default 4). */
        public Builder ringDepth(int ringDepth) {
            if (ringDepth < 1 || ringDepth > 1024) {
                throw new IllegalArgumentException("ringDepth must be in [1, 1024], was " + ringDepth);
            }
            this.ringDepth = ringDepth;
            return this;
        }

        /** What WELCOME names as the store (its folder), for the engine's logs (default empty). */
        public Builder storeName(String storeName) {
            this.storeName = Objects.requireNonNull(storeName, "storeName");
            return this;
        }

        /** How often a running session logs a progress line (default 5 s; at least 10 ms). */
        public Builder progressInterval(Duration interval) {
            if (interval.toMillis() < 10) {
                throw new IllegalArgumentException("progressInterval must be at least 10 ms, was " + interval);
            }
            this.progressInterval = interval;
            return this;
        }

        /** How long {@link SidecarServer#close()} waits for a running session to store what it received (default 60 s). */
        public Builder closeTimeout(Duration timeout) {
            if (timeout.isNegative()) {
                throw new IllegalArgumentException("closeTimeout must not be negative, was " + timeout);
            }
            this.closeTimeout = timeout;
            return this;
        }

        /** Where log lines go, from any of the server's threads (default: SLF4J logger {@code SidecarServer}, {@code INFO}; this replaces it). */
        public Builder log(Consumer<String> log) {
            this.log = Objects.requireNonNull(log, "log");
            return this;
        }

        /**
         * Called with each session's summary as it ends, on the session's feed thread, before {@link #sessions()}
         * emits it (a listener that cannot miss a session, not even one that ends right after binding).
         */
        public Builder onSessionEnd(Consumer<SessionSummary> listener) {
            this.onSessionEnd = Objects.requireNonNull(listener, "listener");
            return this;
        }

        /**
         * Binds the socket and starts accepting engines.
         *
         * @throws IllegalArgumentException when a required setting is missing, or the socket path is too long or is
         *     not a socket
         * @throws IllegalStateException when another process listens on the socket, or binding failed (naming the path)
         */
        public SidecarServer bind() {
            if (socket == null || device == null || sinks == null) {
                throw new IllegalArgumentException("socket, device and sinks are required");
            }
            return new SidecarServer(this);
        }
    }
}
