package dev.routingreplay.bridge;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.sink.RoutingSink;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BiFunction;

/** A sidecar server on the host backend for tests, with its log lines and the sink it opened. */
final class Sidecars implements AutoCloseable {
    final HostDevice device = new HostDevice();
    final List<String> log = new CopyOnWriteArrayList<>();
    final AtomicReference<RoutingSink> sink = new AtomicReference<>();
    final SidecarServer server;
    final Path socket;

    Sidecars(Path dir, int slotCapacity, int ringDepth) {
        this(dir, ringDepth, (shape, maxTokens) -> new MemoryRoutingSink(shape, slotCapacity));
    }

    Sidecars(Path dir, int ringDepth, BiFunction<RoutingShape, Integer, RoutingSink> sinks) {
        this.socket = dir.resolve("r3.sock");
        this.server = SidecarServer.builder().socket(socket).device(device).ringDepth(ringDepth).storeName("memory")
                .progressInterval(Duration.ofMillis(200)).closeTimeout(Duration.ofSeconds(30)).log(log::add)
                .sinks((shape, maxTokens) -> {
                    RoutingSink s = sinks.apply(shape, maxTokens);
                    sink.set(s);
                    return s;
                })
                .bind();
    }

    /** The summary of the next session that ends (subscribe before the session ends). */
    CompletableFuture<SessionSummary> nextSession() {
        return server.sessions().next().toFuture();
    }

    /** Waits for {@code future} up to 60 s. */
    static SessionSummary await(CompletableFuture<SessionSummary> future) {
        try {
            return future.get(60, TimeUnit.SECONDS);
        } catch (Exception e) {
            throw new AssertionError("no session summary within 60 s", e);
        }
    }

    MemoryRoutingSink memorySink() {
        return (MemoryRoutingSink) sink.get();
    }

    @Override
    public void close() {
        server.close();
    }
}
