package dev.routingreplay.sink;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Properties;

/**
 * The store's small properties files (the manifest, the checkpoint): read whole, and replaced whole, so a reader or a
 * crash sees the old file or the new one, never a half-written one.
 */
final class PropertiesFile {
    private PropertiesFile() {
    }

    /** Loads {@code file}. */
    static Properties read(Path file) throws IOException {
        Properties p = new Properties();
        try (InputStream in = Files.newInputStream(file)) {
            p.load(in);
        }
        return p;
    }

    /**
     * Writes {@code p} to a temporary file beside {@code file}, then moves it into place: atomically where the file
     * system can, else replacing it.
     */
    static void replace(Path file, Properties p, String comment) throws IOException {
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        try (OutputStream out = Files.newOutputStream(tmp)) {
            p.store(out, comment);
        }
        try {
            Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING);
        }
    }
}
