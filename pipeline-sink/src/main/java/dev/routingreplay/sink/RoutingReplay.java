package dev.routingreplay.sink;

import dev.routingreplay.core.sink.RequestRouting;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import net.openhft.chronicle.queue.ExcerptTailer;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueue;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueueBuilder;
import net.openhft.chronicle.wire.DocumentContext;
import reactor.core.publisher.Flux;
import reactor.core.publisher.FluxSink;
import reactor.core.publisher.Mono;

/**
 * The trainer's view of a store: finished requests' routing as a {@code Flux}, read from the request queue, in
 * the order they finished. Works in the writer's process or any other; a record is visible as soon as the writer's
 * {@code finish} returned.
 *
 * <p>Each returned {@code Flux} reads on a worker of one shared, bounded scheduler ({@code r3-replay}, at most as
 * many threads as cores, for every replay of the JVM), never on the subscriber's thread; it emits in queue order
 * honouring demand (it reads a record only when one is requested; a live reader with nothing new looks again after
 * 100 us, doubling up to 20 ms), and copies each record's rows to the heap. Finite replays complete at the end of the queue; {@link #live} ones wait for new records until cancelled.
 */
public final class RoutingReplay implements AutoCloseable {
    private final Path dir;
    private final Path queuePath;
    private final StoreManifest manifest;
    private final SingleChronicleQueue queue;

    private RoutingReplay(Path dir) {
        this.dir = dir;
        this.manifest = StoreManifest.read(dir);
        this.queuePath = dir.resolve("requests");
        if (!Files.isDirectory(queuePath)) {
            throw new StoreException(queuePath, "the store has no request queue");
        }
        StoreCheckpoint.checkQueueFiles(queuePath);
        try {
            this.queue = SingleChronicleQueueBuilder.binary(queuePath).build();
        } catch (RuntimeException e) {
            throw new StoreException(queuePath, "cannot open the request queue", e);
        }
    }

    /**
     * Opens the store at {@code dir} for reading.
     *
     * @throws StoreException naming the path when it is not a store or cannot be read
     */
    public static RoutingReplay open(Path dir) {
        return new RoutingReplay(dir);
    }

    /** The store's manifest (shape, slot capacity). */
    public StoreManifest manifest() {
        return manifest;
    }

    /** Every request from the start of the queue (what retention kept), completing at the end. */
    public Flux<ReplayedRequest> fromStart() {
        return read(tailer -> tailer.toStart(), false, null);
    }

    /** The requests after the record at {@code index} (a saved {@link ReplayedRequest#index()}), to the end. */
    public Flux<ReplayedRequest> after(long index) {
        return read(tailer -> skipPast(tailer, index), false, null);
    }

    private void skipPast(ExcerptTailer tailer, long index) {
        if (!tailer.moveToIndex(index)) {
            throw new StoreException(queuePath, "no record at index " + Long.toHexString(index) + " (deleted by retention, or never written)");
        }
        try (DocumentContext dc = tailer.readingDocument()) {
            // skip the saved record itself
        }
    }

    /** The requests after the record at {@code index}, then the new ones as they are written; never completes on its own. */
    public Flux<ReplayedRequest> afterThenLive(long index) {
        return read(tailer -> skipPast(tailer, index), true, null);
    }

    /**
     * The record at {@code index} (a {@link ReplayedRequest#index()}), read on Reactor's bounded elastic scheduler.
     *
     * @return a Mono that fails with a {@link StoreException} naming the index when there is no record there
     */
    public Mono<ReplayedRequest> at(long index) {
        return Mono.fromCallable(() -> {
            try (ExcerptTailer tailer = queue.createTailer()) {
                ReplayedRequest r = tailer.moveToIndex(index) ? readOne(tailer) : null;
                if (r == null || r.index() != index) {
                    throw new StoreException(queuePath, "no record at index " + Long.toHexString(index));
                }
                return r;
            }
        }).subscribeOn(ReplayCursor.READERS);
    }

    /** Only requests written from now on, waiting for each; never completes on its own. */
    public Flux<ReplayedRequest> live() {
        return read(ExcerptTailer::toEnd, true, null);
    }

    /** Every request from the start, then the new ones as they are written; never completes on its own. */
    public Flux<ReplayedRequest> fromStartThenLive() {
        return read(ExcerptTailer::toStart, true, null);
    }

    /**
     * A named reader: resumes where the reader named {@code name} stopped (its position is stored in the queue and
     * survives restarts), then follows live if {@code follow}. Retention can wait for named readers.
     */
    public Flux<ReplayedRequest> fromReader(String name, boolean follow) {
        if (name == null || !name.matches("[A-Za-z0-9._-]{1,64}")) {
            throw new IllegalArgumentException("reader name must be 1-64 of [A-Za-z0-9._-], was '" + name + "'");
        }
        return read(tailer -> { }, follow, name);
    }

    /** The routing of every request from the start, completing at the end of the queue. */
    public Flux<RequestRouting> requests() {
        return fromStart().map(ReplayedRequest::routing);
    }

    private interface Positioner {
        void position(ExcerptTailer tailer);
    }

    private Flux<ReplayedRequest> read(Positioner positioner, boolean follow, String readerName) {
        return Flux.create(sink -> new ReplayCursor(sink, queuePath, follow,
                () -> readerName == null ? queue.createTailer() : queue.createTailer(readerName),
                positioner::position, this::readOne, RoutingReplay::hasNext, this::complete,
                error -> sink.error(asStoreError(error))).start(), FluxSink.OverflowStrategy.ERROR);
    }

    /** A read failure as the subscriber sees it: Chronicle's own checks of a damaged file become a StoreException. */
    private Throwable asStoreError(Throwable error) {
        if (error instanceof StoreException) {
            return error;
        }
        if (error instanceof RuntimeException || error instanceof AssertionError || error instanceof InternalError) {
            // outside a record read (positioning, end of queue)
            return new StoreException(queuePath, "cannot read the request queue (damaged or truncated queue file)", error);
        }
        return error;
    }

    private void complete(FluxSink<ReplayedRequest> sink) {
        StoreException lost = lostTail();
        if (lost != null) {
            sink.error(lost);
        } else {
            sink.complete();
        }
    }

    /** Whether a record follows, without consuming it (the read is rolled back). */
    private static boolean hasNext(ExcerptTailer tailer) {
        try (DocumentContext dc = tailer.readingDocument()) {
            if (!dc.isPresent()) {
                return false;
            }
            dc.rollbackOnClose();
            return true;
        }
    }

    /**
     * Reads and checks the next record; null at the end of the queue.
     *
     * @throws StoreException naming the queue and the record's index when it is corrupt or truncated (checksum,
     *     magic, version, lengths): its bytes are never returned
     */
    private ReplayedRequest readOne(ExcerptTailer tailer) {
        long before = tailer.index();
        try {
            return readChecked(tailer);
        } catch (StoreException e) {
            throw e;
        } catch (RuntimeException | AssertionError | InternalError e) {
            // Chronicle's own checks of a damaged file (a cut header, a length past the end of the file)
            throw new StoreException(queuePath, "cannot read the request record at index " + Long.toHexString(before)
                    + " (damaged or truncated queue file)", e);
        }
    }

    private ReplayedRequest readChecked(ExcerptTailer tailer) {
        try (DocumentContext dc = tailer.readingDocument()) {
            if (!dc.isPresent()) {
                return null;
            }
            long index = dc.index();
            RequestRecords.Header[] header = new RequestRecords.Header[1];
            RequestRouting routing = RequestRecords.read(dc.wire().bytes(), queuePath, index, header);
            return new ReplayedRequest(index, header[0].round(), routing);
        }
    }

    /**
     * At the end of a finite replay: a {@link StoreException} when the queue ends before the last record the writer
     * had acknowledged at its last checkpoint (a truncated, emptied or deleted request file), else null.
     */
    private StoreException lostTail() {
        long acknowledged = StoreCheckpoint.read(dir).requestsLastIndex();
        long last = queue.lastIndex();
        String lost = StoreCheckpoint.lost("request queue", queuePath, last, acknowledged);
        return lost == null ? null : new StoreException(queuePath, lost.substring(queuePath.toString().length() + 2));
    }

    /** Closes the queue; running replays must be cancelled first. */
    @Override
    public void close() {
        queue.close();
    }
}
