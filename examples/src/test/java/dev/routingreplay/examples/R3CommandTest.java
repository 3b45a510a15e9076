package dev.routingreplay.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.sink.CommandRun;
import dev.routingreplay.sink.ExitStatus;
import dev.routingreplay.sink.StoreConfig;
import dev.routingreplay.sink.TestStores;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
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
