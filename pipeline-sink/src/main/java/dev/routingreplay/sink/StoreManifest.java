package dev.routingreplay.sink;

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
 * @param shape routing shape of every row in the store
 * @param slotCapacity slots the journal's steps may address
 * @param rollCycle the roll cycle of both queues; null for a store written before it was recorded (Chronicle's
 *     metadata file then says it)
 */
public record StoreManifest(RoutingShape shape, int slotCapacity, RollCycle rollCycle) {
    /** The manifest file name. */
    public static final String FILE = "store.properties";
    /** The storage format this code writes and reads. */
    public static final int FORMAT = 2;

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
        try {
            int format = Integer.parseInt(p.getProperty("format", "?"));
            if (format != FORMAT) {
                throw new StoreException(file, "store format " + format + " is not supported (this build reads format " + FORMAT + ")");
            }
            RoutingShape shape = new RoutingShape(Integer.parseInt(p.getProperty("moeLayers")), Integer.parseInt(p.getProperty("topK")),
                    Integer.parseInt(p.getProperty("numExperts")));
            return new StoreManifest(shape, Integer.parseInt(p.getProperty("slotCapacity")), rollCycle(file, p));
        } catch (NumberFormatException | NullPointerException e) {
            throw new StoreException(file, "corrupt store manifest (" + p + ")", e);
        }
    }

    /**
     * Opens the store at {@code dir} for {@code shape} and {@code slotCapacity}: creates the folder and manifest (with
     * {@code rollCycle}) when absent, else checks that they match and returns the store's own manifest (whose roll
     * cycle, when recorded, is the one the store keeps).
     *
     * @throws StoreException naming the path when the folder cannot be created or written, or the store was made with
     *     another shape or a smaller slot capacity
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
            return existing;
        }
        StoreManifest created = new StoreManifest(shape, slotCapacity, rollCycle);
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
        return new StoreManifest(shape, slotCapacity, cycle);
    }

    /**
     * Writes this manifest into the store at {@code dir} (a temporary file, then a rename).
     *
     * @throws StoreException naming the file when it cannot be written
     */
    void write(Path dir) {
        Path file = dir.resolve(FILE);
        Properties p = new Properties();
        p.setProperty("format", Integer.toString(FORMAT));
        p.setProperty("moeLayers", Integer.toString(shape.moeLayers()));
        p.setProperty("topK", Integer.toString(shape.topK()));
        p.setProperty("numExperts", Integer.toString(shape.numExperts()));
        p.setProperty("dtype", shape.dtype().numpyName());
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
