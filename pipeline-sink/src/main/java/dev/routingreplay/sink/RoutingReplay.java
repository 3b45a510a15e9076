package dev.routingreplay.sink;

import dev.routingreplay.core.sink.RequestRouting;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.function.Function;
import java.util.function.ToLongFunction;
import net.openhft.chronicle.queue.ExcerptTailer;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueue;
import net.openhft.chronicle.wire.DocumentContext;
import reactor.core.publisher.Flux;
import reactor.core.publisher.FluxSink;
import reactor.core.publisher.Mono;

/**
 * The trainer's view of a store: finished requests' routing as a {@code Flux}, read from the request queue, in
 * the order they finished. Works in the writer's process or any other; a record is visible as soon as the writer's
 * {@code finish} returned.
 *
 * <p>Read-only: the request queue is opened with Chronicle's {@code readOnly} and the roll cycle recorded in the
 * store's manifest, so a store on a read-only mount can be read, and a reader never takes, waits for or breaks the
 * writer's lock (only a writer decides that a lock left by a dead process is stale), never extends, truncates or
 * changes a queue file. The one exception is {@link #fromReader}: a named reader writes its position into
 * {@code <store>/readers/}, so it needs a writable store folder (and is refused on a read-only one).
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
        this.queue = StoreQueues.readOnly(queuePath, manifest.rollCycle());
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
        return read(tailer -> tailer.toStart(), -1, false, null);
    }

    /** The requests after the record at {@code index} (a saved {@link ReplayedRequest#index()}), to the end. */
    public Flux<ReplayedRequest> after(long index) {
        return read(tailer -> skipPast(tailer, index), index, false, null);
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
        return read(tailer -> skipPast(tailer, index), index, true, null);
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

    /** A record with its header, as the replay server reads it. */
    record Stored(long index, RequestRecords.Header header, RequestRouting routing) {
    }

    /**
     * Reads and checks the record at {@code index} on the calling thread (the server calls it on a replay reader's
     * thread); null when there is no record at that index (never written, or deleted by retention).
     *
     * @throws StoreException naming the queue and the index when the record is corrupt or truncated
     */
    Stored readAt(long index) {
        try (ExcerptTailer tailer = queue.createTailer()) {
            if (!tailer.moveToIndex(index)) {
                return null;
            }
            try (DocumentContext dc = tailer.readingDocument()) {
                if (!dc.isPresent() || dc.index() != index) {
                    return null;
                }
                RequestRecords.Header[] header = new RequestRecords.Header[1];
                RequestRouting routing = RequestRecords.read(dc.wire().bytes(), queuePath, index, header);
                return new Stored(index, header[0], routing);
            } catch (StoreException e) {
                throw e;
            } catch (RuntimeException | AssertionError | InternalError e) {
                throw new StoreException(queuePath, "cannot read the request record at index " + Long.toHexString(index)
                        + " (damaged or truncated queue file)", e);
            }
        }
    }

    /** The read-only request queue (the replay server's {@link RequestIndex} reads its headers). */
    SingleChronicleQueue queue() {
        return queue;
    }

    /** The request queue's folder. */
    Path queuePath() {
        return queuePath;
    }

    /** Only requests written from now on, waiting for each; never completes on its own. */
    public Flux<ReplayedRequest> live() {
        return read(ExcerptTailer::toEnd, Long.MAX_VALUE, true, null);
    }

    /** Every request from the start, then the new ones as they are written; never completes on its own. */
    public Flux<ReplayedRequest> fromStartThenLive() {
        return read(ExcerptTailer::toStart, -1, true, null);
    }

    /**
     * A named reader: resumes after the last record the reader named {@code name} took (its position is kept in
     * {@code <store>/readers/<name>.position}, written after each record it takes, and survives restarts and
     * {@code kill -9}), then follows live if {@code follow}. Retention can wait for named readers
     * ({@link StoreConfig#retainForReaders()}). When the record it stopped at was deleted by retention, it resumes at
     * the first record still stored. Only one subscription per name at a time.
     *
     * @throws IllegalArgumentException when {@code name} is not 1-64 of {@code [A-Za-z0-9._-]}
     * @throws StoreException naming the store when its folder is not writable (a read-only mount): a named reader
     *     must write its position; use {@link #after(long)} with a position you keep yourself instead
     */
    public Flux<ReplayedRequest> fromReader(String name, boolean follow) {
        if (name == null || !name.matches("[A-Za-z0-9._-]{1,64}") || name.startsWith(".")) {
            throw new IllegalArgumentException("reader name must be 1-64 of [A-Za-z0-9._-], not starting with a dot, was '" + name + "'");
        }
        if (!Files.isWritable(dir)) {
            throw new StoreException(dir, "the store is read-only, and named reader '" + name + "' must write its position into it; "
                    + "use after(index) with a position you keep yourself");
        }
        return read(null, -1, follow, name);
    }

    /** Positions a tailer after the record at {@code last}, or at the first record still stored (none, or deleted). */
    private static void resume(ExcerptTailer tailer, long last) {
        if (last == ReaderPosition.NONE || !tailer.moveToIndex(last)) {
            tailer.toStart();
            return;
        }
        try (DocumentContext dc = tailer.readingDocument()) {
            // skip the record it took last
        }
    }

    /** The routing of every request from the start, completing at the end of the queue. */
    public Flux<RequestRouting> requests() {
        return fromStart().map(ReplayedRequest::routing);
    }

    private interface Positioner {
        void position(ExcerptTailer tailer);
    }

    private Flux<ReplayedRequest> read(Positioner positioner, long from, boolean follow, String readerName) {
        return read(positioner, from, follow, readerName, this::readOne, ReplayedRequest::index);
    }

    /**
     * Reads records with {@code next} (null at the end of the queue) on a replay reader; {@code indexOf} gives a record's
     * index; a finite replay reports the losses of records after index {@code from} at its end.
     */
    private <T> Flux<T> read(Positioner positioner, long from, boolean follow, String readerName, Function<ExcerptTailer, T> next,
            ToLongFunction<T> indexOf) {
        return Flux.create(sink -> new ReplayCursor<T>(sink, queuePath, follow, new ReplayCursor.Reading<T>() {
            private ReaderPosition position;
            private long lastSeen = -1;

            @Override
            public ExcerptTailer open() {
                ExcerptTailer tailer = queue.createTailer();
                if (readerName != null) {
                    position = ReaderPosition.open(dir, readerName);
                    resume(tailer, position.get());
                } else {
                    positioner.position(tailer);
                }
                return tailer;
            }

            @Override
            public T next(ExcerptTailer tailer) {
                return next.apply(tailer);
            }

            @Override
            public boolean hasNext(ExcerptTailer tailer) {
                return RoutingReplay.hasNext(tailer);
            }

            @Override
            public void emitted(T record) {
                lastSeen = indexOf.applyAsLong(record);
                if (position != null) {
                    position.set(lastSeen);
                }
            }

            @Override
            public void complete(FluxSink<T> s) {
                StoreException lost = lost(from, lastSeen);
                if (lost != null) {
                    s.error(lost);
                } else {
                    s.complete();
                }
            }

            @Override
            public Throwable failure(Throwable error) {
                return asStoreError(error);
            }

            @Override
            public void close() {
                if (position != null) {
                    position.close();
                }
            }
        }).start(), FluxSink.OverflowStrategy.ERROR);
    }

    /**
     * The headers of the records after the record at {@code afterIndex} ({@link StoredRecord#index()}; -1: from the first
     * record still stored), each read whole and checked against its checksum (the rows are not kept), then, when
     * {@code follow}, the new ones as they are written (never completing on its own). When the record at
     * {@code afterIndex} is no longer stored (deleted by retention), it starts at the first record still stored. Reads
     * on a replay reader, honouring demand, as {@link #fromStart()} does.
     *
     * @throws StoreException (signalled) naming the queue and index of a record that fails its checks
     */
    public Flux<StoredRecord> records(long afterIndex, boolean follow) {
        return read(tailer -> resume(tailer, afterIndex), afterIndex, follow, null, this::readHeader, StoredRecord::index);
    }

    private StoredRecord readHeader(ExcerptTailer tailer) {
        long before = tailer.index();
        try (DocumentContext dc = tailer.readingDocument()) {
            if (!dc.isPresent()) {
                return null;
            }
            long index = dc.index();
            RequestRecords.Header[] header = new RequestRecords.Header[1];
            RequestRecords.readChecked(dc.wire().bytes(), queuePath, index, header);
            RequestRecords.Header h = header[0];
            return new StoredRecord(index, h.ordinal(), h.requestId(), h.round(), h.seqLen(), h.shape(), h.rowsCrc());
        } catch (StoreException e) {
            throw e;
        } catch (RuntimeException | AssertionError | InternalError e) {
            throw new StoreException(queuePath, "cannot read the request record at index " + Long.toHexString(before)
                    + " (damaged or truncated queue file)", e);
        }
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
     * At the end of a finite replay from after index {@code from}: a {@link StoreLossException} naming every request file
     * the checkpoint lists that is missing and held records after {@code from} (with their ordinals), and the tail lost
     * when the queue ends before the last record the writer had acknowledged at its last checkpoint (a truncated,
     * emptied or deleted last file); else null. Files retention deleted are not listed, so they are no loss.
     */
    private StoreException lost(long from, long lastSeen) {
        RequestFileLedger files = StoreCheckpoint.files(dir, queue.rollCycle());
        List<String> losses = new ArrayList<>(files.missing(queuePath, from));
        long acknowledged = StoreCheckpoint.read(dir).requestsLastIndex();
        long last;
        try {
            last = queue.lastIndex();
        } catch (RuntimeException | AssertionError e) {
            // a read-only queue whose metadata still lists a deleted file: the end is where this replay stopped
            last = lastSeen;
        }
        String tail = StoreCheckpoint.lost("request queue", queuePath, last, acknowledged);
        if (tail != null && !files.missingHolds(queuePath, acknowledged)) {
            // a tail lost with a missing file is that file's loss, named above
            losses.add(tail.substring(queuePath.toString().length() + 2));
        }
        return losses.isEmpty() ? null : new StoreLossException(queuePath, losses);
    }

    /** Whether a record is stored at {@code index} (damaged or not), read on a replay reader; for the server's cursors. */
    Mono<Boolean> exists(long index) {
        return Mono.fromCallable(() -> {
            try (ExcerptTailer tailer = queue.createTailer()) {
                if (!tailer.moveToIndex(index)) {
                    return false;
                }
                try (DocumentContext dc = tailer.readingDocument()) {
                    dc.rollbackOnClose();
                    return dc.isPresent() && dc.index() == index;
                }
            }
        }).subscribeOn(ReplayCursor.READERS);
    }

    /**
     * A record as a listing sees it: read and checked ({@code request} set), or damaged ({@code damage} says why: a
     * checksum, magic, version or length check failed) and skipped, so the listing goes on after it.
     */
    record Listed(long index, ReplayedRequest request, String damage) {
    }

    /**
     * The records after index {@code after} (-1: from the start), each read and checked, a damaged one as a
     * {@link Listed} saying why instead of an error; then, when {@code follow}, the new ones. A queue file Chronicle
     * cannot read on (a cut frame) still ends it with a {@link StoreException}, and a finite listing ends as
     * {@link #fromStart()} does (a {@link StoreLossException} after the last record when records were lost).
     */
    Flux<Listed> listing(long after, boolean follow) {
        Positioner positioner = after < 0 ? ExcerptTailer::toStart : tailer -> skipPast(tailer, after);
        return read(positioner, after, follow, null, this::readListed, Listed::index);
    }

    private Listed readListed(ExcerptTailer tailer) {
        long before = tailer.index();
        long[] at = {-1};
        try (DocumentContext dc = tailer.readingDocument()) {
            if (!dc.isPresent()) {
                return null;
            }
            at[0] = dc.index();
            RequestRecords.Header[] header = new RequestRecords.Header[1];
            RequestRouting routing = RequestRecords.read(dc.wire().bytes(), queuePath, at[0], header);
            return new Listed(at[0], new ReplayedRequest(at[0], header[0].round(), routing), null);
        } catch (StoreException e) {
            if (at[0] < 0) {
                throw e;
            }
            // the frame was whole (the context closed past it): only the record's own checks failed
            return new Listed(at[0], null, e.problem());
        } catch (RuntimeException | AssertionError | InternalError e) {
            throw new StoreException(queuePath, "cannot read the request record at index " + Long.toHexString(before)
                    + " (damaged or truncated queue file)", e);
        }
    }

    /**
     * Why this store is incomplete, one line naming it, or empty: a store whose first writer has not committed a record
     * or completed a run (it failed early, e.g. a full disk while creating the store or no memory for the ring, or it
     * is still starting). Such a store reads as empty; {@code r3 verify} and {@code r3 export} refuse it.
     */
    public Optional<String> incomplete() {
        return IncompleteMark.reason(dir);
    }

    /** Closes the queue; running replays must be cancelled first. */
    @Override
    public void close() {
        queue.close();
    }
}
