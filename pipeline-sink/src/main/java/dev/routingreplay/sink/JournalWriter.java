package dev.routingreplay.sink;

import dev.routingreplay.core.device.CapturedStep;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.IdentityHashMap;
import java.util.Map;
import java.util.zip.CRC32C;
import net.openhft.chronicle.bytes.Bytes;
import net.openhft.chronicle.bytes.BytesStore;
import net.openhft.chronicle.queue.ExcerptAppender;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueue;
import net.openhft.chronicle.wire.DocumentContext;

/**
 * The journal codec: encodes each event as one journal excerpt ({@link RecordFormat}: type, fields, CRC32C) and
 * appends it inside a Chronicle document context, its bytes preallocated first; a failed append is rolled back and
 * thrown as a {@link StoreException} naming the queue file. A step's rows are copied straight from the ring slot's
 * host memory. Steady state: no allocation per excerpt.
 *
 * <p>Threading: the sink thread only ({@link #claim} moves the appender to a new sink thread).
 */
final class JournalWriter {
    /** Bytes a clear's excerpt takes, checksum included. */
    static final long CLEAR_BYTES = 21;

    private final SingleChronicleQueue journal;
    private final Path dir;
    private final WriteSpace space;
    private final HeaderBuffer header = new HeaderBuffer();
    private final CRC32C crc = new CRC32C();
    private final Map<ByteBuffer, RingMemory> wrapped = new IdentityHashMap<>();
    private ExcerptAppender appender;
    private long lastIndex;

    JournalWriter(SingleChronicleQueue journal, Path dir, WriteSpace space, long lastIndex) {
        this.journal = journal;
        this.dir = dir;
        this.space = space;
        this.lastIndex = lastIndex;
    }

    /** Bytes the excerpt of a step of {@code tokens} tokens takes, checksum included. */
    static long stepBytes(int tokens, int rowBytes) {
        return 13L + 4L * tokens + (long) tokens * rowBytes + RecordFormat.CRC_BYTES;
    }

    /** Bytes an abort's excerpt takes at most, checksum included. */
    static long abortBytes(String id) {
        return 9L + RecordFormat.maxUtf8(id);
    }

    /** Bytes a move's excerpt of {@code slots} slots takes, checksum included. */
    static long moveBytes(int slots) {
        return 9L + 8L * slots;
    }

    /** Makes the calling thread the appender's: creates it on the first call, else resets Chronicle's thread check. */
    void claim() {
        if (appender == null) {
            appender = journal.createAppender();
        } else {
            appender.singleThreadedCheckReset();
        }
    }

    /** The cycle the appender writes. */
    int cycle() {
        return appender.cycle();
    }

    /** The index of the last excerpt written or recovered, or -1. */
    long lastIndex() {
        return lastIndex;
    }

    /** Appends a step: its id, its slots and its rows, read from the ring slot's host memory. */
    void step(CapturedStep step, int rowBytes, long bytes, ChronicleRoutingSink.WriteProbe probe) {
        int n = step.tokenCount();
        RingMemory ring = wrapped.get(step.memory());
        if (ring == null) {
            if (wrapped.size() > 256) {
                wrapped.clear();
            }
            ring = new RingMemory(BytesStore.wrap(step.memory()), step.memory().duplicate());
            wrapped.put(step.memory(), ring);
        }
        ByteBuffer ringView = ring.view();
        BytesStore<?, ByteBuffer> ringBytes = ring.bytes();
        ByteBuffer head = header.clear(13);
        head.put(RecordFormat.STEP).putLong(step.stepId()).putInt(n);
        byte[] headerBytes = header.array();
        crc.reset();
        crc.update(headerBytes, 0, head.position());
        ringView.limit(step.slotsOffset() + 4 * n).position(step.slotsOffset());
        crc.update(ringView);
        ringView.limit(step.rowOffset(0) + n * rowBytes).position(step.rowOffset(0));
        crc.update(ringView);
        Preallocation prealloc = space.journal();
        try (DocumentContext dc = appender.writingDocument()) {
            try {
                Bytes<?> b = dc.wire().bytes();
                prealloc.ensure(appender.cycle(), b, bytes);
                b.write(headerBytes, 0, head.position());
                b.write(ringBytes, step.slotsOffset(), 4L * n);
                b.write(ringBytes, step.rowOffset(0), (long) n * rowBytes);
                b.writeInt((int) crc.getValue());
                probe.beforeCommit(dir, RecordFormat.STEP);
            } catch (Throwable e) {
                dc.rollbackOnClose();
                throw space.failed(prealloc, e);
            }
        }
        lastIndex = appender.lastIndexAppended();
    }

    /** Appends a finish: the request's id, its length and the index of its request record. */
    void finish(String id, int seqLen, long requestIndex, ChronicleRoutingSink.WriteProbe probe) {
        ByteBuffer head = header.clear(1 + 4 + RecordFormat.maxUtf8(id) + 12);
        head.put(RecordFormat.FINISH);
        putId(head, id);
        head.putInt(seqLen).putLong(requestIndex);
        append(head, RecordFormat.FINISH, probe);
    }

    /** Appends an abort: the request's id. */
    void abort(String id, ChronicleRoutingSink.WriteProbe probe) {
        ByteBuffer head = header.clear(5 + RecordFormat.maxUtf8(id));
        head.put(RecordFormat.ABORT);
        putId(head, id);
        append(head, RecordFormat.ABORT, probe);
    }

    /** Appends a move: the source slots, then the destination slots. */
    void move(int[] src, int[] dst, ChronicleRoutingSink.WriteProbe probe) {
        ByteBuffer head = header.clear(5 + 8 * src.length);
        head.put(RecordFormat.MOVE).putInt(src.length);
        for (int s : src) {
            head.putInt(s);
        }
        for (int d : dst) {
            head.putInt(d);
        }
        append(head, RecordFormat.MOVE, probe);
    }

    /** Appends a clear: the store's new round and the engine's round. */
    void clear(long newRound, long engineRound, ChronicleRoutingSink.WriteProbe probe) {
        ByteBuffer head = header.clear(17);
        head.put(RecordFormat.CLEAR).putLong(newRound).putLong(engineRound);
        append(head, RecordFormat.CLEAR, probe);
    }

    private static void putId(ByteBuffer head, String id) {
        int lengthAt = head.position();
        head.putInt(0);
        head.putInt(lengthAt, RecordFormat.putUtf8(head, id));
    }

    /** Appends the excerpt built in {@code head} and its checksum to the journal; rolls back and throws on failure. */
    private void append(ByteBuffer head, byte kind, ChronicleRoutingSink.WriteProbe probe) {
        byte[] headerBytes = header.array();
        crc.reset();
        crc.update(headerBytes, 0, head.position());
        Preallocation prealloc = space.journal();
        try (DocumentContext dc = appender.writingDocument()) {
            try {
                Bytes<?> b = dc.wire().bytes();
                prealloc.ensure(appender.cycle(), b, head.position() + RecordFormat.CRC_BYTES);
                b.write(headerBytes, 0, head.position());
                b.writeInt((int) crc.getValue());
                probe.beforeCommit(dir, kind);
            } catch (Throwable e) {
                dc.rollbackOnClose();
                throw space.failed(prealloc, e);
            }
        }
        lastIndex = appender.lastIndexAppended();
    }

    /** A ring slot's host memory, wrapped once: for Chronicle's bulk copy, and a private view for the checksum. */
    private record RingMemory(BytesStore<?, ByteBuffer> bytes, ByteBuffer view) {
    }
}
