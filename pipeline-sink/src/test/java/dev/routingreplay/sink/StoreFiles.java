package dev.routingreplay.sink;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import net.openhft.chronicle.queue.rollcycles.TestRollCycles;

/** Stores of several request files for the integrity tests: two single-token requests per file, a file a second. */
public final class StoreFiles {
    private StoreFiles() {
    }

    /** A closed store at {@code dir} of {@code files} request files, request ids r0, r1, ... (two per file), ordinals 0, 1, .... */
    public static StoreConfig write(Path dir, int files) throws InterruptedException {
        return write(dir, files, "r%d");
    }

    /** As {@link #write(Path, int)}, request ids {@code String.format(idFormat, n)}. */
    public static StoreConfig write(Path dir, int files, String idFormat) throws InterruptedException {
        StoreConfig config = StoreConfig.of(dir, TestStores.SHAPE, 64).withMinFreeBytes(0).withRollCycle(TestRollCycles.TEST_SECONDLY);
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(config)) {
            for (int f = 0; f < files; f++) {
                // each file's two records just after a second starts (the first file's too), so they never straddle a roll
                long ms = System.currentTimeMillis();
                Thread.sleep(1000 - ms % 1000 + 50);
                TestStores.finish(sink, 2 * f, String.format(idFormat, 2 * f), String.format(idFormat, 2 * f + 1));
            }
        }
        return config;
    }

    /** The request files of the store at {@code dir}, oldest first. */
    public static List<Path> requestFiles(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir.resolve("requests"))) {
            return s.filter(p -> p.toString().endsWith(".cq4")).sorted().toList();
        }
    }
}
