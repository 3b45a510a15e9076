package dev.routingreplay.examples.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.bridge.SidecarMessage;
import dev.routingreplay.bridge.testing.FakeEngine;
import dev.routingreplay.examples.R3Command;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Options whose memory need exceeds the JVM's limits are refused before anything is created: {@code r3 run} and
 * {@code r3 sidecar} in a child JVM with a small heap (so a small default direct-memory limit), as a user would start
 * them. Before the check, the run died of {@code OutOfMemoryError: Cannot reserve ... bytes of direct buffer memory}
 * after creating its store folder.
 */
class MemoryCheckTest {
    @TempDir
    Path tmp;

    /** The child's exit status and standard error. */
    private record Child(int status, String err) {
    }

    private Child r3(List<String> jvm, String... args) throws Exception {
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        for (String arg : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (arg.startsWith("--add-") || arg.startsWith("-Dchronicle")) {
                cmd.add(arg);
            }
        }
        cmd.addAll(jvm);
        cmd.addAll(List.of("-XX:TieredStopAtLevel=1", "-cp", System.getProperty("java.class.path"), R3Command.class.getName()));
        cmd.addAll(List.of(args));
        Path err = tmp.resolve("child.err");
        Process p = new ProcessBuilder(cmd).redirectError(err.toFile()).redirectOutput(tmp.resolve("child.out").toFile()).start();
        try {
            assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the child exits");
        } finally {
            p.destroyForcibly();
        }
        return new Child(p.exitValue(), Files.readString(err));
    }

    private static void assertOneLine(Child c, int status, String prefix, String... parts) {
        assertEquals(status, c.status(), c.err());
        assertEquals(1, c.err().lines().count(), "one line: " + c.err());
        assertTrue(c.err().startsWith(prefix), c.err());
        for (String part : parts) {
            assertTrue(c.err().contains(part), "names '" + part + "': " + c.err());
        }
        assertFalse(c.err().contains("OutOfMemoryError") || c.err().contains("\tat "), c.err());
    }

    @Test
    @Timeout(value = 90, unit = TimeUnit.SECONDS)
    void aRunThatNeedsMoreDirectMemoryThanTheJvmAllowsIsAUsageErrorAndCreatesNoStore() throws Exception {
        Path out = tmp.resolve("store");
        Child c = r3(List.of("-Xmx256m"), "run", "--model", "deepseek-v3", "--ring-depth", "1024", "--concurrency", "4096", "--out",
                out.toString());
        assertOneLine(c, ExitStatus.USAGE.code(), "r3 run: ", "--model deepseek-v3", "--concurrency 4096", "--ring-depth 1024",
                "direct memory", "-XX:MaxDirectMemorySize");
        assertFalse(Files.exists(out), "no store folder");
    }

    @Test
    @Timeout(value = 90, unit = TimeUnit.SECONDS)
    void theLimitIsMaxDirectMemorySizeWhenItIsSet() throws Exception {
        Path out = tmp.resolve("store");
        // 245,760 slots of 464 B (114 MB) fit a 1 GiB heap but not 64 MiB of direct memory
        Child c = r3(List.of("-Xmx1g", "-XX:MaxDirectMemorySize=64m"), "run", "--model", "deepseek-v3", "--concurrency", "512", "--out",
                out.toString());
        assertOneLine(c, ExitStatus.USAGE.code(), "r3 run: ", "--concurrency 512", "64.0 MiB", "-XX:MaxDirectMemorySize");
        assertFalse(Files.exists(out), "no store folder");
    }

    @Test
    @Timeout(value = 90, unit = TimeUnit.SECONDS)
    void aSidecarWhoseSlotsCannotFitIsRefusedAtStart() throws Exception {
        Path store = tmp.resolve("store");
        Path socket = tmp.resolve("r3.sock");
        // at least one byte a slot, whatever shape HELLO brings: 1 GiB of direct memory
        Child c = r3(List.of("-Xmx256m"), "sidecar", "--socket", socket.toString(), "--store", store.toString(), "--slots", "1073741824");
        assertOneLine(c, ExitStatus.USAGE.code(), "r3 sidecar: ", "--slots 1073741824", "direct memory");
        assertFalse(Files.exists(store), "no store folder");
        assertFalse(Files.exists(socket), "no socket");
    }

    @Test
    @Timeout(value = 90, unit = TimeUnit.SECONDS)
    void aHelloWhoseRingCannotFitIsRefusedNamingTheMemoryAndTheOptions() throws Exception {
        Path store = tmp.resolve("store");
        Path socket = tmp.resolve("r3.sock");
        // 1024 ring slots of 65,536 tokens of 12 B rows, twice (staging and host) on the host backend: 2.1 GB, more than
        // this test JVM's 1 GiB (surefire's -Xmx1g, so its default direct-memory limit)
        CompletableFuture<CommandRun> run = CompletableFuture.supplyAsync(() -> CommandRun.of(R3Command.commandLine(), "sidecar", "--socket",
                socket.toString(), "--store", store.toString(), "--slots", "4096", "--ring-depth", "1024", "--once"));
        try (FakeEngine engine = FakeEngine.connect(socket)) {
            SidecarMessage m = engine.hello(new FakeEngine.Spec(3, 2, 300, 8, 8, 65536, 3), tmp, "big-steps");
            assertTrue(m instanceof SidecarMessage.Failed f && f.code() == 2 && f.message().contains("max_tokens=65536")
                    && f.message().contains("--ring-depth 1024") && f.message().contains("direct memory"), String.valueOf(m));
        }
        run.get(60, TimeUnit.SECONDS).assertFails(ExitStatus.USAGE, "r3 sidecar: ", "max_tokens=65536", "--ring-depth 1024", "direct memory");
        assertFalse(Files.exists(store), "no store folder");
    }
}
