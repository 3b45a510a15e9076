package dev.routingreplay.sink;

import java.io.IOException;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * A named reader's position: {@code <store>/readers/<name>.position}, one little-endian i64, the index of the last
 * request record the reader took (-1: none yet). A named reader writes it after each record, through a mapping, so a
 * {@code kill -9} of the reader keeps it; the writer's retention reads it. Readers keep their positions here, not in
 * the queue's metadata, so that no reader ever opens a queue for writing.
 *
 * <p>Public so that a reader that takes records its own way (the cluster announcer advances it only once a record was
 * acknowledged elsewhere) keeps its position where retention ({@link StoreConfig#retainForReaders()}) sees it.
 */
public final class ReaderPosition implements AutoCloseable {
    /** The folder of the positions, inside the store. */
    static final String DIR = "readers";
    /** A reader that has taken no record yet. */
    public static final long NONE = -1;

    private final Path file;
    private final FileChannel channel;
    private final MappedByteBuffer value;

    private ReaderPosition(Path file, FileChannel channel, MappedByteBuffer value) {
        this.file = file;
        this.channel = channel;
        this.value = value;
    }

    static Path file(Path store, String name) {
        return store.resolve(DIR).resolve(name + ".position");
    }

    /**
     * Opens (or creates, at {@link #NONE}) the position of reader {@code name} in the store at {@code store}.
     *
     * @throws StoreException naming the file when it cannot be created or mapped (a read-only store)
     */
    public static ReaderPosition open(Path store, String name) {
        Path file = file(store, name);
        FileChannel channel = null;
        try {
            Files.createDirectories(file.getParent());
            channel = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE);
            boolean fresh = channel.size() < Long.BYTES;
            MappedByteBuffer value = channel.map(FileChannel.MapMode.READ_WRITE, 0, Long.BYTES);
            value.order(ByteOrder.LITTLE_ENDIAN);
            if (fresh) {
                value.putLong(0, NONE);
            }
            return new ReaderPosition(file, channel, value);
        } catch (IOException | UnsupportedOperationException e) {
            closeQuietly(channel);
            throw new StoreException(file, "cannot keep the position of named reader '" + name + "' (a named reader writes its position "
                    + "into the store, which must be writable; on a read-only store use after(index) with a position you save)", e);
        }
    }

    /**
     * The index of the last record reader {@code name} took, {@link #NONE} when it took none or has no position file.
     * Reads without creating or changing anything.
     */
    static long read(Path store, String name) {
        Path file = file(store, name);
        try {
            if (!Files.exists(file) || Files.size(file) < Long.BYTES) {
                return NONE;
            }
            byte[] b = Files.readAllBytes(file);
            return java.nio.ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
        } catch (IOException e) {
            throw new StoreException(file, "cannot read the position of named reader '" + name + "'", e);
        }
    }

    /** The index of the last record taken, or {@link #NONE}. */
    public long get() {
        return value.getLong(0);
    }

    /** Records that the reader took the record at {@code index}. */
    public void set(long index) {
        value.putLong(0, index);
    }

    /** Closes the file; values set before stay in the file (they were written through the mapping). */
    @Override
    public void close() {
        closeQuietly(channel);
    }

    private static void closeQuietly(FileChannel channel) {
        if (channel != null) {
            try {
                channel.close();
            } catch (IOException e) {
                // nothing to keep: the mapping holds the value
            }
        }
    }

    @Override
    public String toString() {
        return file.toString();
    }
}
