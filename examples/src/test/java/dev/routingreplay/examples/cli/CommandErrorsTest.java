package dev.routingreplay.examples.cli;

import dev.routingreplay.sink.StoreConfig;
import dev.routingreplay.sink.TestStores;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/** {@code r3-export} and {@code r3 serve} fail with one line naming the option or path, and a status per kind of error. */
class CommandErrorsTest {
    @TempDir
    Path tmp;

    private static CommandRun export(String... args) {
        return CommandRun.of(CommandErrors.install(new CommandLine(new ExportCommand())), args);
    }

    private static CommandRun serve(String... args) {
        return CommandRun.of(CommandErrors.install(new CommandLine(new ServeCommand())), args);
    }

    private Path store() {
        Path store = tmp.resolve("store");
        TestStores.write(StoreConfig.of(store, TestStores.SHAPE, 64).withMinFreeBytes(0), "a", "b");
        return store;
    }

    @Test
    void aMissingStoreIsStatus3NamingThePathAndCreatesNoOutput() {
        Path missing = tmp.resolve("no-store");
        Path out = tmp.resolve("out");
        export("--store", missing.toString(), "--out", out.toString()).assertFails(ExitStatus.STORE, "r3-export: ", missing.toString());
        assertFalse(Files.exists(out), "nothing is created when the store cannot be read");
        serve("--store", missing.toString(), "--port", "0").assertFails(ExitStatus.STORE, "serve: ", missing.toString());
    }

    @Test
    void verbosePrintsTheStackTraceAfterTheLine() {
        CommandRun run = export("--store", tmp.resolve("no-store").toString(), "--out", tmp.resolve("out").toString(), "--verbose");
        assertEquals(ExitStatus.STORE.code(), run.status());
        assertTrue(run.err().startsWith("r3-export: "), run.err());
        assertTrue(run.err().contains("\tat dev.routingreplay.sink."), run.err());
    }

    @Test
    void anOutputThatIsAFileIsStatus4() throws Exception {
        Path file = Files.writeString(tmp.resolve("taken"), "x");
        export("--store", store().toString(), "--out", file.toString()).assertFails(ExitStatus.OUTPUT_EXISTS, "r3-export: --out ",
                file.toString(), "is not a folder");
        assertEquals("x", Files.readString(file));
    }

    @Test
    void badValuesAreUsageErrorsNamingTheOptionAndValue() {
        String store = store().toString();
        String out = tmp.resolve("out").toString();
        export("--store", store, "--out", out, "--after", "zz").assertFails(ExitStatus.USAGE, "r3-export: Invalid value for option '--after'",
                "'zz' is not a record index");
        export("--store", store, "--out", out, "--after", "-5").assertFails(ExitStatus.USAGE, "r3-export: ", "--after", "'-5'");
        export("--store", store, "--out", out, "--after", "7fffffffffff").assertFails(ExitStatus.USAGE, "r3-export: --after 7fffffffffff",
                "no record at that index");
        export("--store", store, "--out", out, "--limit", "abc").assertFails(ExitStatus.USAGE, "r3-export: ", "--limit", "'abc'");
        export("--store", store, "--out", out, "--limit", "-1").assertFails(ExitStatus.USAGE, "r3-export: ", "--limit", "-1");
        export("--store", store, "--out", out, "--bogus").assertFails(ExitStatus.USAGE, "r3-export: ", "--bogus");
        export("--out", out).assertFails(ExitStatus.USAGE, "r3-export: ", "--store");
        assertFalse(Files.exists(Path.of(out)), "a usage error creates nothing");
        serve("--store", store, "--port", "70000").assertFails(ExitStatus.USAGE, "serve: ", "--port", "70000");
        serve("--store", store, "--port", "x").assertFails(ExitStatus.USAGE, "serve: ", "--port", "'x'");
        serve("--store", store, "--idle-timeout-ms", "0").assertFails(ExitStatus.USAGE, "serve: ", "--idle-timeout-ms", "0 is not in 100..3600000");
        serve("--store", store, "--max-followers", "-1").assertFails(ExitStatus.USAGE, "serve: ", "--max-followers", "-1 is not in 0..100000");
    }

    @Test
    void aBadTokenIsAUsageErrorNamingItsSourceNeverTheToken() throws Exception {
        String store = store().toString();
        Path missing = tmp.resolve("no-token");
        serve("--store", store, "--token-file", missing.toString()).assertFails(ExitStatus.USAGE, "serve: ", "--token-file", missing.toString());
        Path empty = Files.writeString(tmp.resolve("empty-token"), "\n");
        serve("--store", store, "--token-file", empty.toString()).assertFails(ExitStatus.USAGE, "serve: Invalid bearer token in --token-file",
                "it is empty");
        Path spaced = Files.writeString(tmp.resolve("spaced-token"), "sec ret\n");
        CommandRun bad = serve("--store", store, "--token-file", spaced.toString());
        bad.assertFails(ExitStatus.USAGE, "serve: Invalid bearer token in --token-file", "7 characters given (not shown)");
        assertFalse(bad.err().contains("sec ret"), bad.err());
        ServeCommand command = new ServeCommand();
        command.environment = name -> name.equals(ServeCommand.TOKEN_ENV) ? "bad token" : null;
        CommandRun env = CommandRun.of(CommandErrors.install(new CommandLine(command)), "--store", store);
        env.assertFails(ExitStatus.USAGE, "serve: Invalid bearer token in the environment variable R3_TOKEN", "(not shown)");
        assertFalse(env.err().contains("bad token"), env.err());
    }

    @Test
    void aPortInUseIsStatus6() throws Exception {
        try (ServerSocket taken = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            serve("--store", store().toString(), "--port", Integer.toString(taken.getLocalPort()))
                    .assertFails(ExitStatus.UNAVAILABLE, "serve: cannot listen on --host 127.0.0.1 --port " + taken.getLocalPort());
        }
    }

    @Test
    void aFolderUsedBeforeIsRefusedUnlessReplacedAndReplacingLeavesNoStaleFiles() throws Exception {
        TestStores.write(StoreConfig.of(tmp.resolve("big"), TestStores.SHAPE, 64).withMinFreeBytes(0), "a", "b", "c");
        TestStores.write(StoreConfig.of(tmp.resolve("small"), TestStores.SHAPE, 64).withMinFreeBytes(0), "z");
        Path out = tmp.resolve("out");
        assertEquals(0, export("--store", tmp.resolve("big").toString(), "--out", out.toString()).status());
        assertEquals(List.of("a.npy", "b.npy", "c.npy", "manifest.tsv"), files(out));

        export("--store", tmp.resolve("small").toString(), "--out", out.toString()).assertFails(ExitStatus.OUTPUT_EXISTS,
                "r3-export: --out " + out, "holds 4 files already", "--replace");
        assertEquals(List.of("a.npy", "b.npy", "c.npy", "manifest.tsv"), files(out), "a refused export changes nothing");

        CommandRun replaced = export("--store", tmp.resolve("small").toString(), "--out", out.toString(), "--replace");
        assertEquals(0, replaced.status(), replaced.toString());
        assertEquals(List.of("manifest.tsv", "z.npy"), files(out), "no stale .npy file beside the new manifest");
        assertEquals(2, Files.readAllLines(out.resolve("manifest.tsv")).size());

        Files.writeString(out.resolve("notes.txt"), "mine");
        export("--store", tmp.resolve("small").toString(), "--out", out.toString(), "--replace").assertFails(ExitStatus.OUTPUT_EXISTS,
                "r3-export: --out " + out, "notes.txt");
        assertEquals(List.of("manifest.tsv", "notes.txt", "z.npy"), files(out), "--replace deletes nothing when a foreign file is there");
        export("--store", tmp.resolve("small").toString(), "--out", "").assertFails(ExitStatus.USAGE, "r3-export: ", "'--out'", "empty");
    }

    private static List<String> files(Path dir) throws Exception {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }

    @Test
    void aGoodExportIsStatus0() {
        CommandRun run = export("--store", store().toString(), "--out", tmp.resolve("out").toString(), "--limit", "1");
        assertEquals(0, run.status(), run.toString());
        assertTrue(run.out().startsWith("exported 1 requests"), run.out());
        assertEquals("", run.err());
    }
}
