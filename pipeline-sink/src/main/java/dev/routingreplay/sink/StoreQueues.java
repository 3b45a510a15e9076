package dev.routingreplay.sink;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Map;
import java.util.NavigableSet;
import net.openhft.chronicle.queue.RollCycle;
import net.openhft.chronicle.queue.impl.StoreFileListener;
import net.openhft.chronicle.queue.impl.single.FileListedReadOnlyQueue;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueue;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueueBuilder;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueueStore;
import net.openhft.chronicle.wire.Wires;

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
     * written before the manifest recorded it, when Chronicle's metadata decides), after checking that no queue file
     * was cut so short that a read would fault ({@link #checkNotCut}). With the manifest's cycle Chronicle's
     * {@code metadata.cq4t} is not read at all ({@link FileListedReadOnlyQueue}): the files present are the queue.
     *
     * @throws StoreException naming {@code queuePath} when the queue cannot be opened, or naming the file that ends
     *     before its last record
     */
    static SingleChronicleQueue readOnly(Path queuePath, RollCycle cycle) {
        StoreCheckpoint.checkQueueFiles(queuePath);
        SingleChronicleQueue queue;
        try {
            // with the manifest's roll cycle the files are listed from the folder, never from Chronicle's metadata file
            // (which a damaged or emptied copy, or one naming a deleted first file, would make unreadable)
            queue = cycle != null ? FileListedReadOnlyQueue.open(queuePath, cycle)
                    : SingleChronicleQueueBuilder.binary(queuePath).readOnly(true).build();
        } catch (RuntimeException e) {
            throw new StoreException(queuePath, "cannot open the request queue", e);
        }
        try {
            checkNotCut(queue);
            return queue;
        } catch (RuntimeException | Error e) {
            queue.close();
            throw e;
        }
    }

    /**
     * Checks that no file of the read-only {@code queue} was cut (truncated by hand or by a failed copy) so short that
     * a reader would touch bytes past the file's last page. A reader maps the files; a mapped read past the end of the
     * file's last page is a SIGBUS, which the JVM reports as an {@code InternalError} at some later, arbitrary point
     * of the reading thread, where it can escape the replay's error handling (inside Reactor's signalling) and leave
     * the replay neither failed nor completed. A cut inside the last page reads as zeros there, which the records'
     * checksums and the checkpoint report, so such a file stays readable up to its cut. The header and the last
     * record's length are read with {@link FileChannel#read}, which reports the end of the file instead of faulting.
     *
     * @throws StoreException naming the file, its size and where its last record ends
     */
    private static void checkNotCut(SingleChronicleQueue queue) {
        NavigableSet<Long> cycles;
        try {
            cycles = queue.listCyclesBetween(queue.firstCycle(), queue.lastCycle());
        } catch (IllegalStateException gone) {
            // the queue's metadata still lists a deleted file: a replay reports the loss at its end
            return;
        }
        for (long cycle : cycles) {
            SingleChronicleQueueStore store;
            try {
                store = queue.storeForCycle((int) cycle, queue.epoch(), false, null);
            } catch (IllegalStateException gone) {
                // deleted since the listing (retention): nothing of it will be mapped
                continue;
            }
            if (store == null) {
                continue;
            }
            Path file = store.file().toPath();
            try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
                long last = store.writePosition();
                ByteBuffer header = ByteBuffer.allocate(4).order(ByteOrder.nativeOrder());
                while (header.hasRemaining() && channel.read(header, last + header.position()) > 0) {
                    // a short read: read on
                }
                long end = header.hasRemaining() ? last + 4 : last + 4 + Wires.lengthOf(header.getInt(0));
                long size = channel.size();
                // a reader also reads the (4-byte aligned) header after the last record, to find the end
                if (((end + 3) & -4L) + 4 > ((size + Preallocation.PAGE - 1) & -Preallocation.PAGE)) {
                    throw new StoreException(file, "queue file of " + size + " bytes, cut inside its records (its last record ends at byte "
                            + end + "): truncated; its records from byte " + size + " on are lost");
                }
            } catch (IOException e) {
                throw new StoreException(file, "cannot read the queue file", e);
            } finally {
                queue.closeStore(store);
            }
        }
    }
}
