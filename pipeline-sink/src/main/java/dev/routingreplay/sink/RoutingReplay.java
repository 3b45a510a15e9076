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
                try (ExcerptTailer tailer = readerName == null ? queue.createTailer() : queue.createTailer(readerName)) {
                    positioner.position(tailer);
                    long idle = 1_000;
                    while (!sink.isCancelled()) {
                        if (sink.requestedFromDownstream() == 0) {
                            // no demand: a finite replay still completes at the end of the queue
                            if (!follow && !hasNext(tailer)) {
                                complete(sink);
                                break;
                            }
                            LockSupport.parkNanos(MAX_IDLE_NANOS);
                            continue;
                        }
                        ReplayedRequest next = readOne(tailer);
                        if (next != null) {
                            sink.next(next);
                            idle = 1_000;
                        } else if (!follow) {
                            complete(sink);
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
                    executor.shutdown();
                }
            });
        }, FluxSink.OverflowStrategy.ERROR);
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
