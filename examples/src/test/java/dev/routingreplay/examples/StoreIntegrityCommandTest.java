package dev.routingreplay.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.examples.cli.CommandRun;
import dev.routingreplay.examples.cli.ExitStatus;
import dev.routingreplay.sink.ChronicleRoutingSink;
import dev.routingreplay.sink.StoreConfig;
import dev.routingreplay.sink.StoreFiles;
import dev.routingreplay.sink.StoreManifest;
import dev.routingreplay.sink.TestStores;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Issue 21 cases 7, 11 and 12 as {@code r3 verify} and {@code r3 export} see them: one line, a non-zero status. */
@Timeout(120)
class StoreIntegrityCommandTest {
    @TempDir
    Path tmp;

    private static CommandRun r3(String... args) {
        return CommandRun.of(R3Command.commandLine(), args);
    }

    @Test
    void verifyAndExportNameADeletedRequestFileAndItsOrdinals() throws Exception {
        Path store = tmp.resolve("store");
        StoreFiles.write(store, 3, "p%d-L1-s0");
        List<Path> files = StoreFiles.requestFiles(store);
        Files.delete(files.get(1));
        String name = files.get(1).getFileName().toString();
        r3("verify", "--store", store.toString()).assertFails(ExitStatus.STORE, "r3 verify: ", name, "ordinals 2 to 3");
        r3("export", "--store", store.toString(), "--out", tmp.resolve("out").toString())
                .assertFails(ExitStatus.STORE, "r3 export: ", name, "ordinals 2 to 3");
    }

    @Test
    void verifyAndExportRefuseAStoreWhoseWriterFailedEarly() {
        Path store = tmp.resolve("store");
        // the sink opened, then the run failed before it started (as an OutOfMemoryError creating the ring)
        ChronicleRoutingSink.open(StoreConfig.of(store, TestStores.SHAPE, 64).withMinFreeBytes(0)).close();
        r3("verify", "--store", store.toString()).assertFails(ExitStatus.STORE, "r3 verify: ", store.toString(), "incomplete store");
        r3("export", "--store", store.toString(), "--out", tmp.resolve("out").toString())
                .assertFails(ExitStatus.STORE, "r3 export: ", "incomplete store");
        assertTrue(!Files.exists(tmp.resolve("out")) || tmp.resolve("out").toFile().list().length == 0, "nothing exported");
    }

    @Test
    void aCorruptManifestValueIsStatus3NamingTheFileAndKey() throws Exception {
        Path store = tmp.resolve("store");
        TestStores.write(StoreConfig.of(store, TestStores.SHAPE, 64).withMinFreeBytes(0), "a");
        Path manifest = store.resolve(StoreManifest.FILE);
        Files.writeString(manifest, Files.readString(manifest).replaceAll("(?m)^numExperts=.*$", "numExperts=-5"));
        CommandRun run = r3("verify", "--store", store.toString());
        assertEquals(ExitStatus.STORE.code(), run.status(), run.toString());
        run.assertFails(ExitStatus.STORE, "r3 verify: ", manifest.toString(), "numExperts=-5");
    }
}
