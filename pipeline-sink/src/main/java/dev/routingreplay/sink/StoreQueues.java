package dev.routingreplay.sink;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import net.openhft.chronicle.queue.RollCycle;
import net.openhft.chronicle.queue.impl.StoreFileListener;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueue;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueueBuilder;

/**
 * How the store opens its Chronicle queues: the writer's journal and request queue (created if absent, with the
 * store's roll cycle and block size, their files tracked by cycle) and a reader's read-only request queue (the roll
 * cycle recorded in the manifest; never takes the writer's lock or changes a file).
 *
 * <p>Threading: static and stateless; any thread. The file maps given to {@link #writable} are updated on
 * Chronicle's threads, so they must be concurrent.
 */
final class StoreQueues {
    private StoreQueues() {
    }

    /** A writer's queues and the store's manifest (its roll cycle recorded). */
    record Writer(StoreManifest manifest, SingleChronicleQueue journal, SingleChronicleQueue requests) implements AutoCloseable {
        @Override
        public void close() {
            journal.close();
            requests.close();
        }
    }

    /**
     * Opens (or creates) the store's manifest and its journal and request queue for writing, with the roll cycle
     * the store was created with; {@code journalFiles} and {@code requestFiles} learn each cycle's file.
     *
     * @throws StoreException naming the path when the manifest does not match or a queue cannot be opened
     */
    static Writer writer(StoreConfig config, Map<Integer, File> journalFiles, Map<Integer, File> requestFiles) {
        StoreManifest m = StoreManifest.openOrCreate(config.dir(), config.shape(), config.slotCapacity(), config.rollCycle());
        // a store keeps the roll cycle it was created with (Chronicle's metadata would override another one anyway)
        RollCycle cycle = m.rollCycle() != null ? m.rollCycle() : config.rollCycle();
        SingleChronicleQueue j = null;
        SingleChronicleQueue r = null;
        try {
            j = writable(config.journalDir(), journalFiles, "journal", config.journalBlockSize(), cycle);
            r = writable(config.requestsDir(), requestFiles, "request", config.requestBlockSize(), cycle);
            if (m.rollCycle() == null) {
                // a store made before the manifest recorded it: record the cycle the queues use, for read-only readers
                m = m.withRollCycle(r.rollCycle());
                m.write(config.dir());
            }
            return new Writer(m, j, r);
        } catch (RuntimeException | Error e) {
            if (j != null) {
                j.close();
            }
            if (r != null) {
                r.close();
            }
            throw e;
        }
    }

    /**
     * Opens (or creates) the queue in {@code dir} for writing; {@code files} learns each cycle's file as Chronicle
     * acquires or releases it.
     *
     * @throws StoreException naming {@code dir} when the folder cannot be created or the queue cannot be opened
     */
    static SingleChronicleQueue writable(Path dir, Map<Integer, File> files, String what, long blockSize, RollCycle cycle) {
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new StoreException(dir, "cannot create the " + what + " queue folder", e);
        }
        StoreCheckpoint.checkQueueFiles(dir);
        try {
            return SingleChronicleQueueBuilder.binary(dir).rollCycle(cycle).blockSize(blockSize).timeoutMS(2_000)
                    .storeFileListener(new StoreFileListener() {
                        @Override
                        public void onAcquired(int cycle, File file) {
                            files.put(cycle, file);
                        }

                        @Override
                        public void onReleased(int cycle, File file) {
                            files.put(cycle, file);
                        }
                    }).build();
        } catch (RuntimeException e) {
            throw new StoreException(dir, "cannot open the " + what + " queue", e);
        }
    }

    /**
     * Opens the request queue in {@code queuePath} read-only, with {@code cycle} (the manifest's; null for a store
     * written before the manifest recorded it, when Chronicle's metadata decides).
     *
     * @throws StoreException naming {@code queuePath} when the queue cannot be opened
     */
    static SingleChronicleQueue readOnly(Path queuePath, RollCycle cycle) {
        StoreCheckpoint.checkQueueFiles(queuePath);
        try {
            SingleChronicleQueueBuilder builder = SingleChronicleQueueBuilder.binary(queuePath).readOnly(true);
            if (cycle != null) {
                builder.rollCycle(cycle);
            }
            return builder.build();
        } catch (RuntimeException e) {
            throw new StoreException(queuePath, "cannot open the request queue", e);
        }
    }
}
