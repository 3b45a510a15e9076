package dev.routingreplay.sink;

import dev.routingreplay.core.RoutingDtype;
import dev.routingreplay.core.RoutingShape;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Properties;
import net.openhft.chronicle.queue.RollCycle;
import net.openhft.chronicle.queue.RollCycles;

/**
 * {@code store.properties} at the root of a store: the format version, the routing shape, the slot capacity and the
 * queues' roll cycle the store was created with. Written atomically (temporary file, then rename) when the store is
 * created, and once more by a writer that adds the roll cycle to a store made before it was recorded; every open
 * checks it, so a store is never read or extended with another shape. Readers open the queues read-only with the
 * recorded roll cycle: a read-only opener cannot rely on Chronicle's metadata file to learn it.
 *
 * <p>Formats: 3 (this build writes it) stores ids in the smallest dtype that holds the experts, no value reserved, and
 * records missing rows out of band (request records of version 4). 2 (still read) reserved the dtype's largest value
 * as a sentinel ({@link RoutingDtype#legacyForExperts}: uint16 for 256 experts). A writer opening a format 2 store whose
 * ids keep their dtype under format 3 upgrades the manifest (its old records stay as they are and are read as before);
 * one whose dtype would change (256 or 65536 experts) is refused, naming both formats: the store stays readable.
 *
 * @param shape routing shape of every row in the store
 * @param slotCapacity slots the journal's steps may address
 * @param rollCycle the roll cycle of both queues; null for a store written before it was recorded (Chronicle's
 *     metadata file then says it)
 * @param format the store format, {@link #LEGACY_FORMAT} or {@link #FORMAT}
 */
public record StoreManifest(RoutingShape shape, int slotCapacity, RollCycle rollCycle, int format) {
    /** The manifest file name. */
    public static final String FILE = "store.properties";
    /** The storage format this code writes: ids with no sentinel, missing rows out of band. */
    public static final int FORMAT = 3;
    /** The storage format before {@link #FORMAT}: ids with a sentinel; still read. */
    public static final int LEGACY_FORMAT = 2;

    /** A manifest of the current {@link #FORMAT}. */
    public StoreManifest(RoutingShape shape, int slotCapacity, RollCycle rollCycle) {
        this(shape, slotCapacity, rollCycle, FORMAT);
    }

    /** The dtype the store's ids are stored in: the shape's, or for a format 2 store the legacy one. */
    public RoutingDtype dtype() {
        return format == FORMAT ? shape.dtype() : RoutingDtype.legacyForExperts(shape.numExperts());
    }

    /**
     * Reads the manifest of the store at {@code dir}.
     *
     * @throws StoreException naming the file when it is missing, unreadable, of another format or malformed
     */
    public static StoreManifest read(Path dir) {
        Path file = dir.resolve(FILE);
        if (!Files.isRegularFile(file)) {
            throw new StoreException(file, "not a routing store (no " + FILE + ")");
        }
        Properties p;
        try {
            p = PropertiesFile.read(file);
        } catch (IOException | IllegalArgumentException e) {
            throw new StoreException(file, "cannot read the store manifest", e);
        }
        int format = positive(file, p, "format");
        if (format != FORMAT && format != LEGACY_FORMAT) {
            throw new StoreException(file, "store format " + format + " is not supported (this build reads formats " + LEGACY_FORMAT
                    + " and " + FORMAT + ")");
        }
        int layers = positive(file, p, "moeLayers");
        int topK = positive(file, p, "topK");
        int experts = positive(file, p, "numExperts");
        int slots = positive(file, p, "slotCapacity");
        RoutingShape shape;
        try {
            shape = new RoutingShape(layers, topK, experts);
        } catch (IllegalArgumentException e) {
            throw new StoreException(file, "corrupt store manifest: moeLayers=" + layers + ", topK=" + topK + ", numExperts=" + experts
                    + " is no routing shape", e);
        }
        return new StoreManifest(shape, slots, rollCycle(file, p), format);
    }

    /**
     * The value of {@code key} in {@code p}, a whole number of 1 or more.
     *
     * @throws StoreException naming the file, the key and the value when it is absent, malformed or not positive
     */
    private static int positive(Path file, Properties p, String key) {
        String text = p.getProperty(key);
        int value;
        try {
            value = Integer.parseInt(text == null ? "" : text.strip());
        } catch (NumberFormatException e) {
            value = 0;
        }
        if (value < 1) {
            throw new StoreException(file, "corrupt store manifest: " + (text == null ? key + " is missing" : key + "=" + text)
                    + " (want a whole number of 1 or more)");
        }
        return value;
    }

    /**
     * Opens the store at {@code dir} for {@code shape} and {@code slotCapacity}: creates the folder and manifest (with
     * {@code rollCycle}) when absent, else checks that they match and returns the store's own manifest (whose roll
     * cycle, when recorded, is the one the store keeps).
     *
     * @throws StoreException naming the path when the folder cannot be created or written, the store was made with
     *     another shape or a smaller slot capacity, or it is a format 2 store whose ids format 3 would store in
     *     another dtype (it stays readable)
     */
    public static StoreManifest openOrCreate(Path dir, RoutingShape shape, int slotCapacity, RollCycle rollCycle) {
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new StoreException(dir, "cannot create the store folder", e);
        }
        if (!Files.isWritable(dir)) {
            throw new StoreException(dir, "the store folder is not writable");
        }
        Path file = dir.resolve(FILE);
        if (Files.exists(file)) {
            StoreManifest existing = read(dir);
            if (!existing.shape.equals(shape)) {
                throw new StoreException(file, "the store was written with shape " + existing.shape.describe() + ", not " + shape.describe());
            }
            if (existing.slotCapacity < slotCapacity) {
                throw new StoreException(file, "the store holds slotCapacity=" + existing.slotCapacity + ", asked for " + slotCapacity);
            }
            if (existing.format == LEGACY_FORMAT) {
                if (existing.dtype() != shape.dtype()) {
                    throw new StoreException(file, "store format " + LEGACY_FORMAT + " holds the ids of " + shape.numExperts() + " experts as "
                            + existing.dtype().numpyName() + " with a sentinel; this build writes format " + FORMAT + " ("
                            + shape.dtype().numpyName() + ", missing rows recorded apart) and cannot append to it. It stays readable "
                            + "(RoutingReplay, r3 verify/export/serve); write to a new store");
                }
                StoreManifest upgraded = new StoreManifest(existing.shape, existing.slotCapacity, existing.rollCycle, FORMAT);
                upgraded.write(dir);
                return upgraded;
            }
            return existing;
        }
        StoreManifest created = new StoreManifest(shape, slotCapacity, rollCycle);
        // marked first: a writer that fails before its first record or completed run leaves a store that says so
        IncompleteMark.mark(dir);
        created.write(dir);
        return created;
    }

    /**
     * The roll cycle recorded in {@code p}, or null when none is (a store written before it was recorded).
     *
     * @throws StoreException naming the file and the value when no Chronicle roll cycle has that name, format and length
     */
    private static RollCycle rollCycle(Path file, Properties p) {
        String name = p.getProperty("rollCycle");
        if (name == null) {
            return null;
        }
        String format = p.getProperty("rollCycle.format");
        String millis = p.getProperty("rollCycle.millis");
        for (RollCycle cycle : RollCycles.all()) {
            if (cycle.toString().equals(name) && cycle.format().equals(format) && Integer.toString(cycle.lengthInMillis()).equals(millis)) {
                return cycle;
            }
        }
        throw new StoreException(file, "unknown roll cycle rollCycle=" + name + " (format " + format + ", " + millis + " ms)");
    }

    /** This manifest with {@code cycle} as its roll cycle. */
    StoreManifest withRollCycle(RollCycle cycle) {
        return new StoreManifest(shape, slotCapacity, cycle, format);
    }

    /**
     * Writes this manifest into the store at {@code dir} (a temporary file, then a rename).
     *
     * @throws StoreException naming the file when it cannot be written
     */
    void write(Path dir) {
        Path file = dir.resolve(FILE);
        Properties p = new Properties();
        p.setProperty("format", Integer.toString(format));
        p.setProperty("moeLayers", Integer.toString(shape.moeLayers()));
        p.setProperty("topK", Integer.toString(shape.topK()));
        p.setProperty("numExperts", Integer.toString(shape.numExperts()));
        p.setProperty("dtype", dtype().numpyName());
        p.setProperty("slotCapacity", Integer.toString(slotCapacity));
        if (rollCycle != null) {
            p.setProperty("rollCycle", rollCycle.toString());
            p.setProperty("rollCycle.format", rollCycle.format());
            p.setProperty("rollCycle.millis", Integer.toString(rollCycle.lengthInMillis()));
        }
        try {
            PropertiesFile.replace(file, p, "R3 routing store; do not edit");
        } catch (IOException e) {
            throw new StoreException(file, "cannot write the store manifest", e);
        }
    }
}
