package dev.routingreplay.bridge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.bridge.testing.FakeEngine;
import dev.routingreplay.core.sink.MissingReason;
import dev.routingreplay.core.sink.RequestRouting;
import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufUtil;
import io.netty.buffer.Unpooled;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * (d) a pipeline failure is FAILED code 3 naming the field; (e) protocol and HELLO errors are FAILED 1 and 2 naming
 * the field and value; (f) a second engine is told busy; (g) an engine that disconnects mid-run has what it sent
 * stored and the next engine runs; a shutdown answers FAILED 4 and stores what was fed; the socket file's life.
 */
class SessionFailuresTest {
    private static final FakeEngine.Spec SPEC = new FakeEngine.Spec(2, 2, 16, 4, 8, 8, 2);

    @TempDir
    Path tmp;

    private static byte[] frame(EngineMessage m) {
        ByteBuf b = Unpooled.buffer();
        FrameCodec.encode(m, b);
        return ByteBufUtil.getBytes(b);
    }

    private static void writeStep(FakeEngine engine, int tokens, int firstSlot, int id) {
        engine.step(tokens, (routing, slots) -> {
            for (int t = 0; t < tokens; t++) {
                for (int j = 0; j < 4; j++) {
                    routing.putInt((t * 4 + j) * 4, id + j % 2); // [id, id + 1] in each layer: distinct experts
                }
                slots.putLong(t * 8, firstSlot + t);
            }
        });
    }

    /** Connects, lets {@code act} misbehave, and returns the FAILED it got; the session must end FAILED and the connection close. */
    private SidecarMessage.Failed failure(Sidecars sidecar, Consumer<FakeEngine> act) {
        CompletableFuture<SessionSummary> end = sidecar.nextSession();
        try (FakeEngine engine = FakeEngine.connect(sidecar.socket)) {
            act.accept(engine);
            SidecarMessage.Failed failed = engine.expectFailed();
            assertTrue(engine.awaitClosedBySidecar(), "closed after FAILED");
            SessionSummary summary = Sidecars.await(end);
            assertEquals(SessionSummary.Outcome.FAILED, summary.outcome(), summary::describe);
            assertEquals(failed.message(), summary.reason());
            return failed;
        }
    }

    private static void assertFailed(SidecarMessage.Failed failed, FailureCode code, String... parts) {
        assertEquals(code.code(), failed.code(), failed::toString);
        for (String part : parts) {
            assertTrue(failed.message().contains(part), "names '" + part + "': " + failed.message());
        }
    }

    @Test
    void anExpertIdOutOfRangeMakesThatRowMissingAndTheSessionGoesOn() {
        try (Sidecars sidecar = new Sidecars(tmp, 64, 2)) {
            CompletableFuture<SessionSummary> end = sidecar.nextSession();
            try (FakeEngine engine = FakeEngine.connect(sidecar.socket).speakingVersion3()) {
                engine.welcome(SPEC, tmp, "bad-ids");
                engine.admitted("r");
                writeStep(engine, 2, 0, 3);
                engine.step(1, (routing, slots) -> {
                    routing.putInt(0, 1);
                    routing.putInt(4, 99);
                    routing.putInt(8, 2);
                    routing.putInt(12, 3);
                    slots.putLong(0, 5);
                });
                engine.step(1, (routing, slots) -> {
                    routing.putInt(0, 4);
                    routing.putInt(4, 4); // one expert twice in layer 0
                    routing.putInt(8, 2);
                    routing.putInt(12, 3);
                    slots.putLong(0, 6);
                });
                engine.step(1, (routing, slots) -> {
                    routing.putInt(0, 1);
                    routing.putInt(4, 2);
                    routing.putInt(8, 3);
                    routing.putInt(12, 4);
                    slots.putLong(0, 99); // past the 64 slots: the row goes nowhere
                });
                engine.finished("r", new int[] {0, 1, 5, 6, 40, 64});
                assertEquals(new SidecarMessage.Farewell(4, 5, 1), engine.goodbye());
                List<SidecarMessage.RequestError> errors = engine.requestErrors();
                assertEquals(2, errors.size(), errors::toString);
                assertEquals(new SidecarMessage.RequestError(RequestErrorCode.STEP_FAULT.code(), "", "step 1: 1 expert id out of range (first at "
                        + "token 0): those rows are missing (invalid-id)"), errors.get(0));
                assertEquals(new SidecarMessage.RequestError(RequestErrorCode.STEP_FAULT.code(), "", "step 3: 1 slot mapping entry out of range "
                        + "(token 0 = 99): those rows went nowhere; abort the requests of those tokens"), errors.get(1));
            }
            assertEquals(SessionSummary.Outcome.FAREWELL, Sidecars.await(end).outcome());
            RequestRouting r = sidecar.memorySink().finished("r");
            assertEquals(4, r.id(1, 1, 1));
            assertEquals(MissingReason.INVALID_ID, r.missingReason(2));
            assertEquals(MissingReason.DUPLICATE_EXPERT, r.missingReason(3));
            assertEquals(MissingReason.NEVER_WRITTEN, r.missingReason(4));
            assertEquals(MissingReason.BAD_SLOT, r.missingReason(5), "a slot past --slots in a finish is that row's loss, not the session's");
        }
    }

    @Test
    void aSecondHelloOfAnotherShapeIsCode2() {
        try (Sidecars sidecar = new Sidecars(tmp, 64, 2)) {
            CompletableFuture<SessionSummary> end = sidecar.nextSession();
            try (FakeEngine engine = FakeEngine.connect(sidecar.socket)) {
                engine.welcome(SPEC, tmp, "first");
                assertEquals(new SidecarMessage.Farewell(0, 0, 0), engine.goodbye());
            }
            Sidecars.await(end);
            assertFailed(failure(sidecar, engine -> engine.sendHello(new FakeEngine.Spec(3, 2, 16, 4, 8, 8, 2), tmp, "other-shape")),
                    FailureCode.HELLO, "layers=3", "do not match the store's shape");
            assertFailed(failure(sidecar, engine -> engine.sendHello(new FakeEngine.Spec(2, 2, 16, 4, 8, 16, 2), tmp, "more-tokens")),
                    FailureCode.HELLO, "max_tokens=16", "exceeds the store's 8");
        }
    }

    @Test
    void protocolErrorsAreCode1NamingWhatWasWrong() {
        try (Sidecars sidecar = new Sidecars(tmp, 64, 2)) {
            assertFailed(failure(sidecar, e -> e.sendBody(new byte[] {42, 1, 2})), FailureCode.PROTOCOL, "unknown message type 42");
            assertFailed(failure(sidecar, e -> e.sendStep(0, 0, 1)), FailureCode.PROTOCOL, "STEP before HELLO");
            assertFailed(failure(sidecar, e -> e.admitted("early")), FailureCode.PROTOCOL, "ADMITTED before HELLO");
            assertFailed(failure(sidecar, e -> e.sendBody(new byte[] {2, 1, 2, 3, 4})), FailureCode.PROTOCOL, "STEP: truncated at field step_id",
                    "needs 8 bytes, 4 left");
            assertFailed(failure(sidecar, e -> e.sendBody(new byte[] {8, 0})), FailureCode.PROTOCOL, "GOODBYE: 1 bytes after the last field");
            assertFailed(failure(sidecar, e -> e.sendBody(new byte[0])), FailureCode.PROTOCOL, "empty frame");
            assertFailed(failure(sidecar, e -> e.sendBody(new byte[] {3, 2, 0, (byte) 0xC3, 0x28})), FailureCode.PROTOCOL,
                    "ADMITTED: field request_id is not valid UTF-8");
            assertFailed(failure(sidecar, e -> e.sendRaw(new byte[] {0, 0, 0, 2})), FailureCode.PROTOCOL, "frame too long");
            assertFailed(failure(sidecar, e -> {
                e.welcome(SPEC, tmp, "bad-buffer");
                e.sendStep(0, 2, 1);
            }), FailureCode.PROTOCOL, "STEP: buffer=2 is out of range for 2 buffers");
            assertFailed(failure(sidecar, e -> {
                e.welcome(SPEC, tmp, "too-many-tokens");
                e.sendStep(0, 0, 9);
            }), FailureCode.PROTOCOL, "STEP: tokens=9 exceeds max_tokens=8");
            assertFailed(failure(sidecar, e -> {
                e.welcome(SPEC, tmp, "slots-in-version-1");
                e.sendStepSlots(0, 0, 1, new byte[SPEC.slotBytes()]);
            }), FailureCode.PROTOCOL, "STEP_SLOTS in a version 1 session", "needs version 2");
            assertFailed(failure(sidecar, e -> {
                e.sendingSlotsInSteps().welcome(SPEC, tmp, "short-slots");
                e.sendStepSlots(0, 0, 2, new byte[SPEC.slotBytes() + 1]);
            }), FailureCode.PROTOCOL, "STEP_SLOTS: " + (SPEC.slotBytes() + 1) + " bytes of slots for tokens=2", "expected " + 2 * SPEC.slotBytes());
            assertFailed(failure(sidecar, e -> {
                e.sendingSlotsInSteps().welcome(SPEC, tmp, "slots-bad-buffer");
                e.sendStepSlots(0, 2, 0, new byte[0]);
            }), FailureCode.PROTOCOL, "STEP_SLOTS: buffer=2 is out of range for 2 buffers");
            assertFailed(failure(sidecar, e -> {
                e.welcome(SPEC, tmp, "empty-id");
                e.admitted("");
            }), FailureCode.PROTOCOL, "ADMITTED: requestId must not be null or empty");
            assertFailed(failure(sidecar, e -> {
                e.welcome(SPEC, tmp, "two-hellos");
                e.sendHello(SPEC, tmp, "again");
            }), FailureCode.PROTOCOL, "a second HELLO");
        }
    }

    @Test
    void helloErrorsAreCode2NamingTheFieldAndValue() throws IOException {
        Path file = tmp.resolve("buffers.bin");
        Files.write(file, new byte[4096]);
        byte[] path = file.toString().getBytes(StandardCharsets.UTF_8);
        EngineMessage.ExportedBuffer good = new EngineMessage.ExportedBuffer(path, 0, 128, path, 128, 64, new byte[0]);
        record Case(EngineMessage.Hello hello, String... parts) {
        }
        List<Case> cases = new ArrayList<>();
        cases.add(new Case(hello(4, 0, 0, 2, 2, 16, 4, 8, 8, List.of(good)), "version=4", "speaks versions 1 to 3"));
        cases.add(new Case(hello(1, 1, 0, 2, 2, 16, 4, 8, 8, List.of(good)), "backend=1 (cuda)", "host backend"));
        cases.add(new Case(hello(1, 5, 0, 2, 2, 16, 4, 8, 8, List.of(good)), "backend=5"));
        cases.add(new Case(hello(1, 0, 3, 2, 2, 16, 4, 8, 8, List.of(good)), "device=3"));
        cases.add(new Case(hello(1, 0, 0, 0, 2, 16, 4, 8, 8, List.of(good)), "layers=0"));
        cases.add(new Case(hello(1, 0, 0, 2, 20, 16, 4, 8, 8, List.of(good)), "top_k=20 exceeds num_experts=16"));
        cases.add(new Case(hello(1, 0, 0, 2, 2, 16, 3, 8, 8, List.of(good)), "id_bytes=3"));
        cases.add(new Case(hello(1, 0, 0, 2, 2, 16, 4, 2, 8, List.of(good)), "slot_bytes=2"));
        cases.add(new Case(hello(1, 0, 0, 2, 2, 16, 4, 8, 0, List.of(good)), "max_tokens=0"));
        cases.add(new Case(hello(1, 0, 0, 2, 2, 16, 4, 8, 8, List.of()), "buffers=0"));
        cases.add(new Case(hello(1, 0, 0, 2, 2, 16, 4, 8, 8, java.util.Collections.nCopies(65, good)), "buffers=65"));
        cases.add(new Case(hello(1, 0, 0, 2, 2, 16, 4, 8, 8, List.of(new EngineMessage.ExportedBuffer(path, 0, 127, path, 128, 64, new byte[0]))),
                "buffer[0].routing_bytes=127 is too small", "needs 128"));
        cases.add(new Case(hello(1, 0, 0, 2, 2, 16, 4, 8, 8, List.of(good, new EngineMessage.ExportedBuffer(path, 0, 128, path, 128, 63, new byte[0]))),
                "buffer[1].slots_bytes=63 is too small", "needs 64"));
        byte[] missing = tmp.resolve("missing.bin").toString().getBytes(StandardCharsets.UTF_8);
        cases.add(new Case(hello(1, 0, 0, 2, 2, 16, 4, 8, 8, List.of(new EngineMessage.ExportedBuffer(missing, 0, 128, path, 128, 64, new byte[0]))),
                "buffer[0].routing_handle", "missing.bin", "does not exist"));
        cases.add(new Case(hello(1, 0, 0, 2, 2, 16, 4, 8, 8, List.of(new EngineMessage.ExportedBuffer(path, 4000, 128, path, 128, 64, new byte[0]))),
                "buffer[0].routing_handle", "too short for range [4000, 4128)"));
        cases.add(new Case(hello(1, 0, 0, 2, 2, 16, 4, 8, 8, List.of(new EngineMessage.ExportedBuffer(path, 0, 128, path, 128, 64, new byte[64]))),
                "buffer[0].ready_event_handle", "64 bytes"));
        try (Sidecars sidecar = new Sidecars(tmp, 64, 2)) {
            for (Case c : cases) {
                assertFailed(failure(sidecar, e -> e.sendRaw(frame(c.hello()))), FailureCode.HELLO, c.parts());
            }
            assertEquals(0, sidecar.device.liveBytes());
        }
    }

    private static EngineMessage.Hello hello(int version, int backend, int device, int layers, int topK, long experts, int idBytes, int slotBytes,
            long maxTokens, List<EngineMessage.ExportedBuffer> buffers) {
        return new EngineMessage.Hello(version, backend, device, layers, topK, experts, idBytes, slotBytes, maxTokens, "crafted", buffers);
    }

    @Test
    void aSecondEngineIsToldBusyAndTheFirstRunsOn() {
        try (Sidecars sidecar = new Sidecars(tmp, 64, 2); FakeEngine first = FakeEngine.connect(sidecar.socket)) {
            first.welcome(SPEC, tmp, "first");
            first.admitted("r");
            writeStep(first, 2, 0, 4);
            try (FakeEngine second = FakeEngine.connect(sidecar.socket)) {
                SidecarMessage.Failed busy = second.expectFailed();
                assertFailed(busy, FailureCode.BUSY, "busy", "session 1");
                assertTrue(second.awaitClosedBySidecar());
            }
            first.finished("r", new int[] {0, 1});
            assertEquals(new SidecarMessage.Farewell(1, 2, 1), first.goodbye());
            assertTrue(sidecar.log.stream().anyMatch(l -> l.startsWith("connection 2 refused: busy")), sidecar.log::toString);
        }
    }

    @Test
    void anEngineThatDisconnectsMidRunHasWhatItSentStoredAndTheNextEngineRuns() {
        try (Sidecars sidecar = new Sidecars(tmp, 1024, 2)) {
            FakeEngine.Spec spec = new FakeEngine.Spec(2, 2, 16, 4, 8, 64, 2);
            Oracle oracle = new Oracle(21, spec, 100_000);
            CompletableFuture<SessionSummary> end = sidecar.nextSession();
            long sent;
            try (oracle; FakeEngine engine = FakeEngine.connect(sidecar.socket)) {
                engine.welcome(spec, tmp, "vanishing");
                assertTrue(oracle.play(engine, 3000), "the scenario is longer than what is played");
                sent = engine.sentSteps();
            } // closed without GOODBYE, without waiting for the last CONSUMEDs
            SessionSummary summary = Sidecars.await(end);
            assertEquals(SessionSummary.Outcome.DISCONNECTED, summary.outcome(), summary::describe);
            assertEquals(sent, summary.steps(), () -> "every step sent was fed: " + summary.describe());
            assertTrue(oracle.scenario.expected().size() > 10, "finished: " + oracle.scenario.expected().size());
            oracle.assertStored(sidecar.memorySink());
            assertTrue(sidecar.log.stream().anyMatch(l -> l.contains("ended: disconnected (the engine disconnected without GOODBYE")),
                    sidecar.log::toString);
            assertFalse(sidecar.server.hasSession());

            try (Oracle again = new Oracle(22, spec, 500); FakeEngine next = FakeEngine.connect(sidecar.socket)) {
                next.welcome(spec, tmp, "next");
                again.play(next, Long.MAX_VALUE);
                assertEquals(new SidecarMessage.Farewell(next.sentSteps(), next.sentTokens(), next.sentFinished()), next.goodbye());
                again.assertStored(sidecar.memorySink());
            }
        }
    }

    @Test
    void closingTheServerMidRunAnswersShuttingDownStoresWhatWasFedAndRemovesTheSocket() {
        Sidecars sidecar = new Sidecars(tmp, 64, 2);
        try (FakeEngine engine = FakeEngine.connect(sidecar.socket)) {
            CompletableFuture<SessionSummary> end = sidecar.nextSession();
            engine.welcome(SPEC, tmp, "interrupted");
            engine.admitted("r");
            writeStep(engine, 2, 0, 9);
            engine.finished("r", new int[] {0, 1});
            engine.admitted("s");
            writeStep(engine, 1, 2, 5);
            engine.awaitAllConsumed();
            sidecar.close();
            assertFailed(engine.expectFailed(), FailureCode.BUSY, "shutting down");
            SessionSummary summary = end.getNow(null);
            assertEquals(SessionSummary.Outcome.FAILED, summary.outcome(), "ended before close returned");
            assertEquals(2, summary.steps());
            assertEquals(9, sidecar.memorySink().finished("r").id(0, 0, 0));
            assertFalse(Files.exists(sidecar.socket), "socket removed");
        }
    }

    @Test
    void aStaleSocketIsReplacedAndAnythingElseIsRefused() throws IOException {
        Path socket = tmp.resolve("r3.sock");
        try (ServerSocketChannel dead = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            dead.bind(UnixDomainSocketAddress.of(socket));
        }
        assertTrue(Files.exists(socket), "a stale socket file stays behind");
        try (Sidecars sidecar = new Sidecars(tmp, 64, 1)) {
            CompletableFuture<SessionSummary> probe = sidecar.nextSession();
            IllegalStateException live = assertThrows(IllegalStateException.class, () -> new Sidecars(tmp, 64, 1));
            assertTrue(live.getMessage().contains("another process listens"), live.getMessage());
            assertEquals(SessionSummary.Outcome.DISCONNECTED, Sidecars.await(probe).outcome(), "the probe was a connection too");
            try (FakeEngine engine = FakeEngine.connect(sidecar.socket)) {
                engine.welcome(SPEC, tmp, "after-stale");
                assertEquals(new SidecarMessage.Farewell(0, 0, 0), engine.goodbye());
            }
        }
        assertFalse(Files.exists(socket));
        Files.writeString(socket, "not a socket");
        IllegalArgumentException notSocket = assertThrows(IllegalArgumentException.class, () -> new Sidecars(tmp, 64, 1));
        assertTrue(notSocket.getMessage().contains("exists and is not a socket"), notSocket.getMessage());
        assertEquals("not a socket", Files.readString(socket), "never deleted");
        Path longPath = tmp.resolve("x".repeat(120) + ".sock");
        IllegalArgumentException tooLong = assertThrows(IllegalArgumentException.class,
                () -> SidecarServer.builder().socket(longPath).device(new dev.routingreplay.core.host.HostDevice())
                        .sinks((s, t) -> null).bind());
        assertTrue(tooLong.getMessage().contains("a Unix domain socket path holds 1 to 107"), tooLong.getMessage());
    }
}
