package dev.routingreplay.bridge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.bridge.testing.FakeEngine;
import dev.routingreplay.core.device.InterprocessDevice;
import dev.routingreplay.core.device.InterprocessEvent;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Proxy;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The per-step handshake on the events, which the host backend leaves out (its events do nothing): for STEP(k, b)
 * the sidecar waits on {@code ready[b]}, then records {@code consumed[b]}, and CONSUMED(k, b) reaches the engine only
 * after that record; at the end every event it opened or created is closed. The device is the host device behind a
 * proxy (so the sidecar runs its CUDA backend) whose events write what is done to them into a trace.
 */
class StepHandshakeTest {
    @TempDir
    Path tmp;

    private final List<String> trace = new CopyOnWriteArrayList<>();

    private final class TracedEvent implements InterprocessEvent {
        private final InterprocessEvent event;
        private final String name;

        TracedEvent(InterprocessEvent event, String name) {
            this.event = event;
            this.name = name;
        }

        @Override
        public byte[] handle() {
            return event.handle();
        }

        @Override
        public void recordOnCompute() {
            trace.add(name + ".record");
            event.recordOnCompute();
        }

        @Override
        public void waitOnCompute() {
            trace.add(name + ".wait");
            event.waitOnCompute();
        }

        @Override
        public void close() {
            trace.add(name + ".close");
            event.close();
        }
    }

    private InterprocessDevice tracedDevice(HostDevice host) {
        AtomicInteger ready = new AtomicInteger();
        AtomicInteger consumed = new AtomicInteger();
        return (InterprocessDevice) Proxy.newProxyInstance(getClass().getClassLoader(), new Class<?>[] {InterprocessDevice.class},
                (proxy, method, args) -> {
                    Object result;
                    try {
                        result = method.invoke(host, args);
                    } catch (InvocationTargetException e) {
                        throw e.getCause();
                    }
                    if (method.getName().equals("openExportedEvent")) {
                        return new TracedEvent((InterprocessEvent) result, "ready" + ready.getAndIncrement());
                    }
                    if (method.getName().equals("createExportedEvent")) {
                        return new TracedEvent((InterprocessEvent) result, "consumed" + consumed.getAndIncrement());
                    }
                    return result;
                });
    }

    @Test
    void eachStepWaitsOnItsReadyEventThenRecordsItsConsumedEventBeforeConsumedIsSent() {
        HostDevice host = new HostDevice();
        CompletableFuture<SessionSummary> end = new CompletableFuture<>();
        FakeEngine.Spec spec = new FakeEngine.Spec(2, 2, 16, 4, 8, 8, 2);
        try (SidecarServer server = SidecarServer.builder().socket(tmp.resolve("r3.sock")).device(tracedDevice(host)).ringDepth(2)
                .sinks((shape, maxTokens) -> new MemoryRoutingSink(shape, 64)).closeTimeout(Duration.ofSeconds(30)).log(line -> { })
                .onSessionEnd(end::complete).bind();
                FakeEngine engine = FakeEngine.connect(server.socket())) {
            engine.sendHello(spec, tmp, "traced", 1, Backend.CUDA.code(), 0);
            SidecarMessage welcome = engine.next();
            assertTrue(welcome instanceof SidecarMessage.Welcome w && w.backend() == Backend.CUDA.code(), String.valueOf(welcome));
            for (int k = 0; k < 3; k++) {
                engine.step(1, (routing, slots) -> slots.putLong(0, 0));
                engine.awaitAllConsumed();
                // CONSUMED(k) arrived: the record of its buffer's consumed event came before it
                assertEquals("consumed" + (k % 2) + ".record", trace.get(trace.size() - 1), trace::toString);
            }
            assertEquals(List.of("ready0.wait", "consumed0.record", "ready1.wait", "consumed1.record", "ready0.wait", "consumed0.record"), trace);
            assertEquals(new SidecarMessage.Farewell(3, 3, 0), engine.goodbye());
            assertEquals(SessionSummary.Outcome.FAREWELL, Sidecars.await(end).outcome());
            assertEquals(List.of("consumed1.close", "consumed0.close", "ready1.close", "ready0.close"),
                    trace.stream().filter(t -> t.endsWith(".close")).toList(), "every event closed, the created ones first");
        }
        assertEquals(0, host.liveBytes(), "every buffer opened was closed");
    }
}
