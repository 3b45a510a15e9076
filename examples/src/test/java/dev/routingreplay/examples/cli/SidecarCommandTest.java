package dev.routingreplay.examples.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.bridge.SidecarMessage;
import dev.routingreplay.bridge.testing.FakeEngine;
import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.sink.RequestRouting;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.RolloutScenario;
import dev.routingreplay.examples.R3Command;
import dev.routingreplay.sink.ChronicleRoutingSink;
import dev.routingreplay.sink.ReplayedRequest;
import dev.routingreplay.sink.RoutingReplay;
import dev.routingreplay.sink.StoreConfig;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code r3 sidecar}: a fake engine over the real socket into a Chronicle store, read back with the replay API. */
class SidecarCommandTest {
    private static final FakeEngine.Spec SPEC = new FakeEngine.Spec(3, 2, 300, 8, 8, 64, 3);
    private static final RoutingShape SHAPE = new RoutingShape(3, 2, 300);

    @TempDir
    Path tmp;

    private CompletableFuture<CommandRun> sidecar(String... extra) {
        List<String> args = new ArrayList<>(List.of("sidecar", "--socket", tmp.resolve("r3.sock").toString(), "--store",
                tmp.resolve("store").toString(), "--slots", "4096", "--progress-ms", "100"));
        args.addAll(List.of(extra));
        return CompletableFuture.supplyAsync(() -> CommandRun.of(R3Command.commandLine(), args.toArray(String[]::new)));
    }

    private static CommandRun await(CompletableFuture<CommandRun> run) throws Exception {
        return run.get(60, TimeUnit.SECONDS);
    }

    /** Plays a randomized rollout through {@code engine}; returns the oracle's routing per finished request. */
    private static Map<String, long[][]> play(FakeEngine engine, long seed, int steps, long limit) {
        try (HostEngine source = new HostEngine(new HostDevice(), SHAPE, SPEC.maxTokens(), ElementType.INT64, ElementType.INT64)) {
            RolloutScenario scenario = new RolloutScenario(seed, SHAPE, source, SPEC.maxTokens(), steps);
            EngineEvent e;
            for (long i = 0; i < limit && (e = scenario.next()) != null; i++) {
                engine.send(e);
            }
            return new HashMap<>(scenario.expected());
        }
    }

    private static void assertStored(Path store, Map<String, long[][]> expected) {
        Map<String, RequestRouting> stored = new HashMap<>();
        try (RoutingReplay replay = RoutingReplay.open(store)) {
            for (ReplayedRequest r : replay.fromStart().toIterable()) {
                stored.put(r.routing().requestId(), r.routing());
            }
        }
        assertEquals(expected.keySet(), stored.keySet());
        for (Map.Entry<String, long[][]> e : expected.entrySet()) {
            long[] got = stored.get(e.getKey()).toLongArray();
            long[][] rows = e.getValue();
            assertEquals(rows.length * SHAPE.idsPerRow(), got.length, e.getKey());
            for (int p = 0; p < rows.length; p++) {
                for (int j = 0; j < SHAPE.idsPerRow(); j++) {
                    assertEquals(rows[p][j], got[p * SHAPE.idsPerRow() + j], e.getKey() + " position " + p + " id " + j);
                }
            }
        }
    }

    @Test
    void onceStoresAFullRolloutInAChronicleStoreAndExitsZeroAfterFarewell() throws Exception {
        CompletableFuture<CommandRun> run = sidecar("--once");
        Map<String, long[][]> expected;
        try (FakeEngine engine = FakeEngine.connect(tmp.resolve("r3.sock"))) {
            SidecarMessage.Welcome welcome = engine.welcome(SPEC, tmp, "pytorch-ish");
            assertEquals(tmp.resolve("store").toAbsolutePath().toString(), welcome.store());
            expected = play(engine, 5, 2000, Long.MAX_VALUE);
            assertEquals(new SidecarMessage.Farewell(engine.sentSteps(), engine.sentTokens(), engine.sentFinished()), engine.goodbye());
        }
        CommandRun done = await(run);
        assertEquals(ExitStatus.OK.code(), done.status(), done::toString);
        assertTrue(done.out().startsWith("r3 sidecar: listening on " + tmp.resolve("r3.sock")), done.out());
        assertTrue(done.out().contains("r3 sidecar: session 1 (engine pytorch-ish) ended: farewell"), done.out());
        assertFalse(Files.exists(tmp.resolve("r3.sock")), "socket removed");
        assertTrue(expected.size() > 50, "finished: " + expected.size());
        assertStored(tmp.resolve("store"), expected);
    }

    @Test
    void onceExitsOneWhenTheEngineDisconnectsAndWhatItSentIsStored() throws Exception {
        CompletableFuture<CommandRun> run = sidecar("--once");
        Map<String, long[][]> expected;
        try (FakeEngine engine = FakeEngine.connect(tmp.resolve("r3.sock"))) {
            engine.welcome(SPEC, tmp, "crashing");
            expected = play(engine, 6, 100_000, 1500);
        }
        CommandRun done = await(run);
        done.assertFails(ExitStatus.CHECK_FAILED, "r3 sidecar: session 1 (engine crashing) ended: disconnected");
        assertStored(tmp.resolve("store"), expected);
    }

    @Test
    void aStoreOfAnotherShapeIsRefusedAtHelloAndOnceExitsThree() throws Exception {
        try (ChronicleRoutingSink other = ChronicleRoutingSink.open(StoreConfig.of(tmp.resolve("store"), new RoutingShape(2, 2, 16), 64))) {
            assertNotNull(other);
        }
        CompletableFuture<CommandRun> run = sidecar("--once");
        try (FakeEngine engine = FakeEngine.connect(tmp.resolve("r3.sock"))) {
            SidecarMessage m = engine.hello(SPEC, tmp, "mismatch");
            assertTrue(m instanceof SidecarMessage.Failed f && f.code() == 2 && f.message().contains("the store was written with shape"),
                    String.valueOf(m));
        }
        await(run).assertFails(ExitStatus.STORE, "r3 sidecar: ", "store.properties", "the store was written with shape");
    }

    @Test
    void badOptionsFailBeforeAnythingIsOpened() throws IOException {
        String sock = tmp.resolve("r3.sock").toString();
        String store = tmp.resolve("store").toString();
        CommandRun.of(R3Command.commandLine(), "sidecar", "--store", store).assertFails(ExitStatus.USAGE, "r3 sidecar: ", "--socket");
        CommandRun.of(R3Command.commandLine(), "sidecar", "--socket", sock, "--store", store, "--ring-depth", "0")
                .assertFails(ExitStatus.USAGE, "r3 sidecar: ", "--ring-depth", "1..1024");
        CommandRun.of(R3Command.commandLine(), "sidecar", "--socket", sock, "--store", store, "--backend", "tpu")
                .assertFails(ExitStatus.USAGE, "r3 sidecar: ", "--backend", "'tpu'");
        CommandRun.of(R3Command.commandLine(), "sidecar", "--socket", sock, "--store", store, "--pack", "gpu")
                .assertFails(ExitStatus.USAGE, "r3 sidecar: ", "--pack", "'gpu'", "host or device");
        CommandRun.of(R3Command.commandLine(), "sidecar", "--socket", sock, "--store", store, "--pack", "device")
                .assertFails(ExitStatus.USAGE, "r3 sidecar: ", "--pack device needs --backend cuda");
        CommandRun.of(R3Command.commandLine(), "sidecar", "--socket", sock, "--store", store, "--slots", "0")
                .assertFails(ExitStatus.USAGE, "r3 sidecar: ", "--slots");
        CommandRun.of(R3Command.commandLine(), "sidecar", "--socket", tmp.resolve("x".repeat(120)).toString(), "--store", store)
                .assertFails(ExitStatus.USAGE, "r3 sidecar: ", "--socket", "1 to 107");
        Files.writeString(tmp.resolve("file"), "x");
        CommandRun.of(R3Command.commandLine(), "sidecar", "--socket", sock, "--store", tmp.resolve("file").toString())
                .assertFails(ExitStatus.STORE, "r3 sidecar: ", "--store", "not a folder");
        CommandRun.of(R3Command.commandLine(), "sidecar", "--socket", tmp.resolve("file").toString(), "--store", store)
                .assertFails(ExitStatus.OUTPUT_EXISTS, "r3 sidecar: ", "exists and is not a socket");
        CommandRun.of(R3Command.commandLine(), "sidecar", "--socket", tmp.resolve("no/such/dir/r3.sock").toString(), "--store", store)
                .assertFails(ExitStatus.UNAVAILABLE, "r3 sidecar: ", "cannot listen on socket");
        assertFalse(Files.exists(tmp.resolve("store")), "nothing was created");
    }

    @Test
    void sigtermAnswersShuttingDownStoresWhatWasFedAndRemovesTheSocket() throws Exception {
        Path socket = tmp.resolve("r3.sock");
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        for (String arg : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (arg.startsWith("--add-") || arg.startsWith("-Dchronicle") || arg.startsWith("-Xmx")) {
                cmd.add(arg);
            }
        }
        cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), R3Command.class.getName(), "sidecar", "--socket", socket.toString(),
                "--store", tmp.resolve("store").toString(), "--slots", "4096"));
        Process child = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(tmp.resolve("sidecar.out").toFile()).start();
        try {
            Map<String, long[][]> expected;
            try (FakeEngine engine = FakeEngine.connect(socket)) {
                engine.welcome(SPEC, tmp, "terminated");
                expected = play(engine, 7, 100_000, 1200);
                engine.awaitAllConsumed();
                child.destroy(); // SIGTERM
                SidecarMessage.Failed failed = engine.expectFailed();
                assertEquals(4, failed.code());
                assertTrue(failed.message().contains("shutting down"), failed.message());
            }
            assertTrue(child.waitFor(60, TimeUnit.SECONDS), "the sidecar exits");
            String out = Files.readString(tmp.resolve("sidecar.out"));
            assertTrue(out.contains("r3 sidecar: listening on " + socket) && out.contains("ended: failed (the sidecar is shutting down)"), out);
            assertFalse(Files.exists(socket), "socket removed");
            assertStored(tmp.resolve("store"), expected);
        } finally {
            child.destroyForcibly();
            child.waitFor(Duration.ofSeconds(10).toSeconds(), TimeUnit.SECONDS);
        }
    }
}
