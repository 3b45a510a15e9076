package dev.routingreplay.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.examples.cli.CommandRun;
import dev.routingreplay.examples.cli.ExitStatus;
import dev.routingreplay.sink.StoreConfig;
import dev.routingreplay.sink.TestStores;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.api.io.TempDir;

/** Every {@code r3} failure is one line naming the option or path, with the status of its kind; run in-process. */
class R3CommandTest {
    @TempDir
    Path tmp;

    static CommandRun r3(String... args) {
        return CommandRun.of(R3Command.commandLine(), args);
    }

    @Test
    void aMissingStoreIsStatus3ForEverySubcommandThatReadsOne() {
        String missing = tmp.resolve("missing").toString();
        r3("verify", "--store", missing).assertFails(ExitStatus.STORE, "r3 verify: ", missing);
        r3("export", "--store", missing, "--out", tmp.resolve("out").toString()).assertFails(ExitStatus.STORE, "r3 export: ", missing);
        r3("serve", "--store", missing, "--port", "0").assertFails(ExitStatus.STORE, "r3 serve: ", missing);
        CommandRun verbose = r3("verify", "--store", missing, "--verbose");
        assertEquals(ExitStatus.STORE.code(), verbose.status());
        assertTrue(verbose.err().contains("\tat "), "--verbose adds the stack trace: " + verbose.err());
    }

    @Test
    void malformedValuesAreUsageErrorsNamingTheOption() {
        String out = tmp.resolve("run").toString();
        r3("run", "--model", "gpt-5", "--out", out).assertFails(ExitStatus.USAGE, "r3 run: Invalid value for option '--model'", "gpt-5",
                "deepseek-v3");
        r3("run", "--requests", "many", "--out", out).assertFails(ExitStatus.USAGE, "r3 run: ", "--requests", "'many'");
        r3("run", "--seed", "1.5", "--out", out).assertFails(ExitStatus.USAGE, "r3 run: ", "--seed", "'1.5'");
        r3("run", "--backend", "tpu", "--out", out).assertFails(ExitStatus.USAGE, "r3 run: ", "--backend", "'tpu'");
        r3("export", "--store", out, "--out", out, "--after", "zz").assertFails(ExitStatus.USAGE, "r3 export: ", "--after", "'zz'");
        r3("nonsense").assertFails(ExitStatus.USAGE, "r3: ", "nonsense");
        assertFalse(Files.exists(Path.of(out)), "a usage error creates nothing");
    }

    @ParameterizedTest(name = "{0} {1}")
    @CsvSource({
        "--requests, 2147483647, 1..1000000000",
        "--requests, 0, 1..1000000000",
        "--concurrency, 2147483647, 1..4096",
        "--concurrency, 0, 1..4096",
        "--ring-depth, 0, 1..1024",
        "--ring-depth, 5000, 1..1024",
        "--progress-ms, 0, 100..3600000",
        "--progress-ms, -1, 100..3600000",
    })
    void outOfRangeValuesAreUsageErrorsAndCreateNothing(String option, String value, String range) {
        Path out = tmp.resolve("run");
        r3("run", "--out", out.toString(), option, value).assertFails(ExitStatus.USAGE,
                "r3 run: Invalid value for option '" + option + "': " + value + " is not in " + range);
        assertFalse(Files.exists(out), "no store is created for a rejected option");
    }

    @Test
    void anEmptyOutIsAUsageErrorNotTheCurrentFolder() throws Exception {
        try (var before = Files.list(Path.of(""))) {
            long files = before.count();
            r3("run", "--out", "", "--requests", "4").assertFails(ExitStatus.USAGE, "r3 run: Invalid value for option '--out'", "empty");
            try (var after = Files.list(Path.of(""))) {
                assertEquals(files, after.count(), "nothing written into the current folder");
            }
        }
    }

    @Test
    void engineConfigRefusesSizesThatWouldOverflow() {
        var shape = dev.routingreplay.core.ModelPreset.MIXTRAL_8X7B.shape();
        var tooMany = assertThrows(IllegalArgumentException.class, () -> EngineConfig.defaults(shape, Integer.MAX_VALUE, 4, 1));
        assertTrue(tooMany.getMessage().contains("requests must be at most 1000000000, was 2147483647"), tooMany.getMessage());
        var pool = assertThrows(IllegalArgumentException.class, () -> EngineConfig.defaults(shape, 16, Integer.MAX_VALUE, 1));
        assertTrue(pool.getMessage().startsWith("concurrency=2147483647 needs a KV pool"), pool.getMessage());
    }

    @Test
    void aSmallRunPrintsProgressAndPasses() {
        Path out = tmp.resolve("run");
        CommandRun run = r3("run", "--out", out.toString(), "--requests", "8", "--concurrency", "4", "--model", "mixtral-8x7b",
                "--progress-ms", "100");
        assertEquals(0, run.status(), run.toString());
        assertTrue(run.out().contains("trainer: OK"), run.out());
        assertTrue(Files.exists(out.resolve("store.properties")));
    }

    @Test
    void runIntoAFolderThatHoldsAStoreIsStatus4() {
        Path store = tmp.resolve("store");
        TestStores.write(StoreConfig.of(store, TestStores.SHAPE, 64).withMinFreeBytes(0), "a");
        r3("run", "--requests", "4", "--out", store.toString()).assertFails(ExitStatus.OUTPUT_EXISTS, "r3 run: --out ", store.toString(),
                "already holds a store");
    }

    @Test
    void aCheckThatFindsWrongRoutingIsStatus1() {
        // the fixture's routing is not the simulated gate's: verify reads it and reports mismatches
        Path store = tmp.resolve("store");
        TestStores.write(StoreConfig.of(store, TestStores.SHAPE, 64).withMinFreeBytes(0), "p0-L4-s0");
        CommandRun run = r3("verify", "--store", store.toString());
        assertEquals(ExitStatus.CHECK_FAILED.code(), run.status(), run.toString());
        assertTrue(run.out().contains("trainer: FAILED"), run.out());
    }
}
