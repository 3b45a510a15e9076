package net.openhft.chronicle.queue.impl.single;

import java.nio.file.Path;
import net.openhft.chronicle.queue.RollCycle;
import net.openhft.chronicle.queue.impl.TableStore;
import net.openhft.chronicle.queue.impl.table.ReadonlyTableStore;
import net.openhft.chronicle.wire.WireType;

/**
 * R3 (pipeline-sink): opens a queue read-only without reading its {@code metadata.cq4t}: the roll cycle is the one
 * given (the store's manifest records it), and the queue's files are found by listing the folder (Chronicle's own
 * fallback for a read-only queue without metadata, {@code FileSystemDirectoryListing}), never from the metadata's
 * listing. So a damaged, emptied or stale metadata file (one that still names a deleted first file) cannot make the
 * files unreadable, and nothing is logged about it. It lives in Chronicle's package because the metadata store a
 * queue uses is package-private there; a Chronicle upgrade that changes it fails {@code StoreMetadataTest}.
 *
 * <p>Threading: build it on one thread; the queue it opens is Chronicle's, as thread-safe as any read-only queue.
 */
public final class FileListedReadOnlyQueue extends SingleChronicleQueueBuilder {
    private TableStore<SCQMeta> store;

    private FileListedReadOnlyQueue() {
    }

    /** Opens the queue in {@code dir} read-only with {@code cycle} (epoch 0, Chronicle's default). */
    public static SingleChronicleQueue open(Path dir, RollCycle cycle) {
        FileListedReadOnlyQueue builder = new FileListedReadOnlyQueue();
        builder.path(dir.toFile()).wireType(WireType.BINARY_LIGHT).readOnly(true).rollCycle(cycle);
        return builder.build();
    }

    /** Never reads the metadata file: an in-memory, read-only store of the given roll cycle instead. */
    @Override
    protected void initializeMetadata() {
        store = new ReadonlyTableStore<>(new SCQMeta(new SCQRoll(rollCycle(), epoch(), null, null), sourceId()));
    }

    @Override
    TableStore<SCQMeta> metaStore() {
        return store;
    }
}
