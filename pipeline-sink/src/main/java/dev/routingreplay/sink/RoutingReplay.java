package dev.routingreplay.sink;

import dev.routingreplay.core.sink.RequestRouting;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import net.openhft.chronicle.queue.ExcerptTailer;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueue;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueueBuilder;
import net.openhft.chronicle.wire.DocumentContext;
import reactor.core.publisher.Flux;
import reactor.core.publisher.FluxSink;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

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
 * <p>Each returned {@code Flux} reads on its own thread ({@code r3-replay-*}), never on the subscriber's, emits in
 * queue order honouring demand (it reads a record only when one is requested; a waiting reader parks at most 1 ms at a
 * time), and copies each record's rows to the heap. Finite replays complete at the end of the queue; {@link #live} ones wait for new records until cancelled.
 */
public final class RoutingReplay implements AutoCloseable {
    private static final long MAX_IDLE_NANOS = TimeUnit.MILLISECONDS.toNanos(1);

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
            SingleChronicleQueueBuilder builder = SingleChronicleQueueBuilder.binary(queuePath).readOnly(true);
            if (manifest.rollCycle() != null) {
                builder.rollCycle(manifest.rollCycle());
            }
            this.queue = builder.build();
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
        }).subscribeOn(Schedulers.boundedElastic());
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
        return read(null, follow, name);
    }

    /** Positions a named reader's tailer after the last record it took, or at the first record still stored. */
    private void resume(ExcerptTailer tailer, ReaderPosition position) {
        long last = position.get();
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

    private Flux<ReplayedRequest> read(Positioner positioner, boolean follow, String readerName) {
        return Flux.create(sink -> {
            // a plain (blocking-allowed) thread: the reader parks while it waits for records
            ExecutorService executor = Executors.newSingleThreadExecutor(r -> {
                Thread t = new Thread(r, "r3-replay-" + dir.getFileName());
                t.setDaemon(true);
                return t;
            });
            Scheduler thread = Schedulers.fromExecutorService(executor, "r3-replay");
            Thread[] reader = new Thread[1];
            sink.onRequest(n -> {
                Thread t = reader[0];
                if (t != null) {
                    LockSupport.unpark(t);
                }
            });
            sink.onDispose(() -> {
                Thread t = reader[0];
                if (t != null) {
                    LockSupport.unpark(t);
                }
            });
            thread.schedule(() -> {
                reader[0] = Thread.currentThread();
                ReaderPosition position = null;
                try (ExcerptTailer tailer = queue.createTailer()) {
                    if (readerName != null) {
                        position = ReaderPosition.open(dir, readerName);
                        resume(tailer, position);
                    } else {
                        positioner.position(tailer);
                    }
                    long idle = 1_000;
                    long lastSeen = -1;
                    while (!sink.isCancelled()) {
                        if (sink.requestedFromDownstream() == 0) {
                            // no demand: a finite replay still completes at the end of the queue
                            if (!follow && !hasNext(tailer)) {
                                complete(sink, lastSeen);
                                break;
                            }
                            LockSupport.parkNanos(MAX_IDLE_NANOS);
                            continue;
                        }
                        ReplayedRequest next = readOne(tailer);
                        if (next != null) {
                            lastSeen = next.index();
                            if (position != null) {
                                position.set(next.index());
                            }
                            sink.next(next);
                            idle = 1_000;
                        } else if (!follow) {
                            complete(sink, lastSeen);
                            break;
                        } else {
                            LockSupport.parkNanos(idle);
                            idle = Math.min(idle * 2, MAX_IDLE_NANOS);
                        }
                    }
                } catch (StoreException e) {
                    sink.error(e);
                } catch (RuntimeException | AssertionError | InternalError e) {
                    // Chronicle's own checks of a damaged file, outside a record read (positioning, end of queue)
                    sink.error(new StoreException(queuePath, "cannot read the request queue (damaged or truncated queue file)", e));
                } catch (Throwable t) {
                    sink.error(t);
                } finally {
                    if (position != null) {
                        position.close();
                    }
                    executor.shutdown();
                }
            });
        }, FluxSink.OverflowStrategy.ERROR);
    }

    private void complete(FluxSink<ReplayedRequest> sink, long lastSeen) {
        StoreException lost = lostTail(lastSeen);
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
    private StoreException lostTail(long lastSeen) {
        long acknowledged = StoreCheckpoint.read(dir).requestsLastIndex();
        long last;
        try {
            last = queue.lastIndex();
        } catch (RuntimeException | AssertionError e) {
            // a read-only queue whose metadata still lists a deleted file: the end is where this replay stopped
            last = lastSeen;
        }
        String lost = StoreCheckpoint.lost("request queue", queuePath, last, acknowledged);
        return lost == null ? null : new StoreException(queuePath, lost.substring(queuePath.toString().length() + 2));
    }

    /** Closes the queue; running replays must be cancelled first. */
    @Override
    public void close() {
        queue.close();
    }
}
