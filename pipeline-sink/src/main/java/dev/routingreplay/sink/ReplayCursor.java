package dev.routingreplay.sink;

import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import net.openhft.chronicle.queue.ExcerptTailer;
import reactor.core.publisher.FluxSink;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * One replay subscription's position in the request queue, read on a worker of the shared, bounded
 * {@link #READERS} scheduler instead of a thread of its own: a thousand idle followers share a few threads.
 *
 * <p>Each drain runs on the subscription's worker (so its Chronicle tailer is only ever touched by one thread),
 * reads while there is demand and records, and returns. A follower that found nothing new polls again after a delay
 * that doubles from 100 us up to {@value #MAX_IDLE_MILLIS} ms; new demand or cancellation drains at once. A finite
 * replay completes at the end of the queue, also without outstanding demand.
 */
final class ReplayCursor<T> {
    /** Threads that read for every replay of this JVM: at least 2, at most the number of cores. */
    static final Scheduler READERS = Schedulers.newBoundedElastic(Math.max(2, Runtime.getRuntime().availableProcessors()),
            Integer.MAX_VALUE, "r3-replay", 60, true);
    static final long MAX_IDLE_MILLIS = 20;
    private static final long MIN_IDLE_NANOS = TimeUnit.MICROSECONDS.toNanos(100);

    /** What one subscription reads and how; every method runs on the subscription's worker. */
    interface Reading<T> {
        /** Creates the tailer and puts it where the subscription starts. */
        ExcerptTailer open();

        /** The next record, checked, or null at the end of the queue. */
        T next(ExcerptTailer tailer);

        /** Whether a record follows, without consuming it. */
        boolean hasNext(ExcerptTailer tailer);

        /** Called after {@code record} was emitted (a named reader saves its position here). */
        void emitted(T record);

        /** Ends a finite replay at the end of the queue: completes {@code sink}, or fails it when records were lost. */
        void complete(FluxSink<T> sink);

        /** A read failure as the subscriber should see it. */
        Throwable failure(Throwable error);

        /** Releases what {@link #open} took besides the tailer; called once, also after a failure. */
        void close();
    }

    private final FluxSink<T> sink;
    private final Path queuePath;
    private final Scheduler.Worker worker;
    private final Reading<T> reading;
    private final boolean follow;
    private final AtomicInteger wip = new AtomicInteger();
    /** Worker only. */
    private ExcerptTailer tailer;
    /** Worker only. */
    private long idleNanos = MIN_IDLE_NANOS;
    /** Worker only. */
    private boolean done;

    /** A cursor that, once {@link #start}ed, emits what {@code reading} reads into {@code sink}. */
    ReplayCursor(FluxSink<T> sink, Path queuePath, boolean follow, Reading<T> reading) {
        this.sink = sink;
        this.queuePath = queuePath;
        this.follow = follow;
        this.reading = reading;
        this.worker = READERS.createWorker();
    }

    /** Hooks demand and cancellation to the cursor and schedules the first drain. */
    void start() {
        sink.onRequest(n -> wake());
        sink.onDispose(this::wake);
        wake();
    }

    /** Any thread: makes sure a drain runs after this call. */
    private void wake() {
        if (wip.getAndIncrement() == 0) {
            try {
                worker.schedule(this::drain);
            } catch (RuntimeException rejected) {
                wip.set(0);
                sink.error(new StoreException(queuePath, "the replay readers' scheduler refused a read: " + rejected.getMessage(), rejected));
            }
        }
    }

    private void drain() {
        int missed = 1;
        boolean retryLater = false;
        do {
            retryLater = drainOnce();
            missed = wip.addAndGet(-missed);
        } while (missed != 0);
        if (done) {
            worker.dispose();
        } else if (retryLater) {
            worker.schedule(this::wake, idleNanos, TimeUnit.NANOSECONDS);
            idleNanos = Math.min(idleNanos * 2, TimeUnit.MILLISECONDS.toNanos(MAX_IDLE_MILLIS));
        }
    }

    /** Reads what demand and the queue allow; true when a follower found nothing and should look again later. */
    private boolean drainOnce() {
        if (done) {
            return false;
        }
        try {
            if (sink.isCancelled()) {
                finish();
                return false;
            }
            if (tailer == null) {
                tailer = reading.open();
            }
            while (sink.requestedFromDownstream() > 0 && !sink.isCancelled()) {
                T next = reading.next(tailer);
                if (next == null) {
                    if (!follow) {
                        reading.complete(sink);
                        finish();
                        return false;
                    }
                    return true;
                }
                sink.next(next);
                reading.emitted(next);
                idleNanos = MIN_IDLE_NANOS;
            }
            if (sink.isCancelled()) {
                finish();
            } else if (!follow && !reading.hasNext(tailer)) {
                // no demand, but a finite replay still completes at the end of the queue
                reading.complete(sink);
                finish();
            }
            return false;
        } catch (Throwable t) {
            finish();
            sink.error(reading.failure(t));
            return false;
        }
    }

    private void finish() {
        if (done) {
            return;
        }
        done = true;
        try {
            if (tailer != null) {
                tailer.close();
                tailer = null;
            }
        } finally {
            reading.close();
        }
    }
}
