package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 21 case 12: a corrupt value in {@code store.properties} is a {@link StoreException} naming the file and the key;
 * Chronicle's {@code metadata.cq4t} (which it can rebuild) damaged or emptied does not make an intact store unreadable,
 * and is reported in one line.
 */
@Timeout(120)
class StoreMetadataTest {
    @TempDir
    Path dir;

    private void write() {
        TestStores.write(StoreConfig.of(dir, TestStores.SHAPE, 64).withMinFreeBytes(0), "a", "b", "c");
    }

    /** Reads every id while capturing standard error; returns {ids, stderr}. */
    private List<Object> readCapturingStderr() {
        PrintStream err = System.err;
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        System.setErr(new PrintStream(captured, true, StandardCharsets.UTF_8));
        List<String> ids;
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            ids = replay.fromStart().map(r -> r.routing().requestId()).collectList().block(Duration.ofSeconds(30));
        } finally {
            System.setErr(err);
        }
        return List.of(ids, captured.toString(StandardCharsets.UTF_8));
    }

    @Test
    void aCorruptManifestValueNamesTheFileAndTheKey() throws Exception {
        write();
        Path manifest = dir.resolve(StoreManifest.FILE);
        for (String[] bad : new String[][] {{"numExperts", "-5"}, {"topK", "0"}, {"moeLayers", "x"}, {"slotCapacity", "-1"}}) {
            String text = Files.readString(manifest);
            String changed = text.replaceAll("(?m)^" + bad[0] + "=.*$", bad[0] + "=" + bad[1]);
            Files.writeString(manifest, changed);
            StoreException e = assertThrows(StoreException.class, () -> StoreManifest.read(dir));
            assertTrue(e.getMessage().startsWith(manifest.toString()) && e.getMessage().contains(bad[0] + "=" + bad[1]), e.getMessage());
            Files.writeString(manifest, text);
        }
    }

    @Test
    void aDamagedMetadataFileLeavesTheStoreReadableWithOneLine() throws Exception {
        write();
        Path metadata = dir.resolve("requests").resolve("metadata.cq4t");
        long size = Files.size(metadata);
        Random random = new Random(21);
        try (RandomAccessFile f = new RandomAccessFile(metadata.toFile(), "rw")) {
            for (int i = 0; i < 16; i++) {
                long at = random.nextInt((int) Math.min(size, 1024));
                f.seek(at);
                int b = f.read();
                f.seek(at);
                f.write(b ^ 0xff);
            }
        }
        List<Object> read = readCapturingStderr();
        assertEquals(List.of("a", "b", "c"), read.get(0));
        String err = (String) read.get(1);
        assertTrue(err.lines().count() <= 1 && !err.contains("\tat "), err);
    }

    @Test
    void anEmptiedMetadataFileLeavesTheStoreReadableWithNoStackTrace() throws Exception {
        write();
        Files.write(dir.resolve("requests").resolve("metadata.cq4t"), new byte[0]);
        List<Object> read = readCapturingStderr();
        assertEquals(List.of("a", "b", "c"), read.get(0));
        String err = (String) read.get(1);
        assertTrue(err.lines().count() <= 1 && !err.contains("\tat "), err);
        assertFalse(err.contains("Exception"), err);
    }
}
