package dev.routingreplay.sink;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/**
 * {@code <dir>/incomplete}: a store whose first writer has not yet committed a record or completed a run. Written
 * before {@code store.properties} when a store is created, so a writer that fails early (a full disk while the store is
 * created, an allocation failure before the run starts) leaves a store that says so, instead of an empty one that
 * checks as "0 requests OK". Taken off by the writer at its first checkpoint after a committed record, or when a run
 * completes into it (even one of no request). Readers read such a store as any other; {@code r3 verify} and
 * {@code r3 export} refuse it.
 */
final class IncompleteMark {
    /** The mark's file name. */
    static final String FILE = "incomplete";

    private IncompleteMark() {
    }

    /**
     * Marks the new store at {@code dir} incomplete.
     *
     * @throws StoreException naming the file when it cannot be written (then no store is created)
     */
    static void mark(Path dir) {
        Path file = dir.resolve(FILE);
        try {
            Files.writeString(file, "R3 routing store: its writer has not committed a record or completed a run yet "
                    + "(still starting, or it failed early); do not edit\n", StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new StoreException(file, "cannot create the store", e);
        }
    }

    /** Whether the store at {@code dir} is marked incomplete. */
    static boolean present(Path dir) {
        return Files.exists(dir.resolve(FILE));
    }

    /**
     * Takes the mark off the store at {@code dir}.
     *
     * @throws StoreException naming the file when it cannot be deleted
     */
    static void clear(Path dir) {
        Path file = dir.resolve(FILE);
        try {
            Files.deleteIfExists(file);
        } catch (IOException e) {
            throw new StoreException(file, "cannot mark the store complete", e);
        }
    }

    /** Why the store at {@code dir} is incomplete, one line naming it, or empty when it is not. */
    static Optional<String> reason(Path dir) {
        return present(dir) ? Optional.of(dir + ": incomplete store: the writer that created it has not committed a record or "
                + "completed a run (it failed early, or is still starting); nothing in it to check") : Optional.empty();
    }
}
