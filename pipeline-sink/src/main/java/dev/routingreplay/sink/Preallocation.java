package dev.routingreplay.sink;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import net.openhft.chronicle.bytes.Bytes;
import net.openhft.chronicle.bytes.MappedBytes;

/**
 * Makes the bytes a write will touch exist on disk before the mapped write touches them: a queue file is sparse,
 * and a mapped write into a hole when the disk (or tmpfs) is full is a SIGBUS, which the JVM reports as an
 * {@code InternalError} at some later access, possibly after the excerpt was acknowledged. So every write first
 * makes sure its bytes and {@link #AHEAD} more are allocated, by writing zeros with {@link FileChannel#write}
 * beyond the queue's write position (never below it: those bytes hold excerpts); a full disk is then an
 * {@code IOException} before any byte of the excerpt is written. Steady state: one comparison per write, no
 * allocation; a write of zeros every {@link #AHEAD} bytes.
 *
 * <p>Threading: the sink thread only (the writer of its queue); {@link #close} once the sink is closing.
 */
final class Preallocation implements AutoCloseable {
    /** How far beyond a write's end the file is allocated: the next writes' headers, index entries and bytes. */
    static final long AHEAD = 4L << 20;
    static final long PAGE = 4096;
    private static final int ZERO_BYTES = 1 << 20;

    private final Path queue;
    private final QueueBytes usage;
    private ByteBuffer zeros;
    private int cycle = Integer.MIN_VALUE;
    private File file;
    private FileChannel channel;
    private long allocatedTo;

    Preallocation(Path queue, QueueBytes bytes) {
        this.queue = queue;
        this.usage = bytes;
    }

    /** The bytes a file whose last excerpt ends at {@code end} takes after this preallocation's writes. */
    static long allocatedFor(long end) {
        return (end + AHEAD + PAGE - 1) & -PAGE;
    }

    /** The file written last, or the queue's folder before the first write. */
    Path path() {
        return file == null ? queue : file.toPath();
    }

    /**
     * Allocates bytes {@code [position, position + bytes + AHEAD)} of the queue file of {@code cycle}, where
     * {@code position} is {@code out}'s write position (an offset in the mapped queue file).
     *
     * @throws StoreException naming the file when the disk is full (nothing of the excerpt was written yet)
     */
    void ensure(int cycle, Bytes<?> out, long bytes) {
        long position = out.writePosition();
        long end = position + bytes;
        if (cycle == this.cycle && end <= allocatedTo) {
            return;
        }
        if (cycle != this.cycle) {
            open(cycle, out);
        }
        long from = Math.max(allocatedTo, (position + PAGE - 1) & -PAGE);
        long start = from;
        long to = (end + AHEAD + PAGE - 1) & -PAGE;
        try {
            while (from < to) {
                zeros.clear().limit((int) Math.min(ZERO_BYTES, to - from));
                from += channel.write(zeros, from);
            }
        } catch (IOException e) {
            throw new StoreException(file.toPath(), "disk full: cannot allocate bytes " + from + " to " + to
                    + " ahead of the write; nothing of it was written", e);
        }
        allocatedTo = to;
        usage.extend(cycle, start, to);
    }

    private void open(int newCycle, Bytes<?> out) {
        if (!(out instanceof MappedBytes mapped)) {
            throw new StoreException(queue, "the queue does not write to a mapped file (" + out.getClass().getName() + ")");
        }
        File f = mapped.mappedFile().file();
        close();
        try {
            channel = FileChannel.open(f.toPath(), StandardOpenOption.WRITE);
        } catch (IOException e) {
            throw new StoreException(f.toPath(), "cannot open the queue file to allocate space in it", e);
        }
        if (zeros == null) {
            zeros = ByteBuffer.allocateDirect(ZERO_BYTES);
        }
        file = f;
        cycle = newCycle;
        allocatedTo = 0;
    }

    @Override
    public void close() {
        if (channel != null) {
            try {
                channel.close();
            } catch (IOException e) {
                // nothing to keep: the zeros were written
            }
            channel = null;
        }
    }
}
