package dev.routingreplay.core.pipeline;

import dev.routingreplay.core.event.EngineEvent;
import java.util.Queue;
import java.util.concurrent.atomic.AtomicLongFieldUpdater;
import java.util.stream.Stream;
import org.reactivestreams.Subscription;
import org.agrona.concurrent.IdleStrategy;
import reactor.core.CoreSubscriber;
import reactor.core.Exceptions;
import reactor.core.Scannable;
import reactor.core.publisher.Operators;
import reactor.util.concurrent.Queues;
import reactor.util.context.Context;

/**
 * The completion and sink stages, on the pipeline's own sink thread ({@code r3-sink-NAME}, one per run).
 *
 * <p>Signals: takes {@link Staged} events in order from the device stage into a bounded queue; for each, waits until
 * its copy completed (a ring slot) and the downstream has demand, applies it to the sink, releases the ring slot and
 * emits the acknowledged {@link EngineEvent} downstream, on the sink thread. A device error terminates at once; an
 * upstream error or completion is signalled after the events queued before it were flushed.
 *
 * <p>Demand: requests {@code prefetch} events from the device stage and replenishes 3/4 of that at a time, so the
 * queue never overflows. Waiting idles the sink thread with the pipeline's Agrona {@code IdleStrategy} (by default
 * parks from 1 us doubling up to 100 ms); the engine thread (new event), the backend's completion callback and the
 * downstream (request, cancel) unpark it at once. Nothing here allocates per step.
 *
 * <p>The sink thread also frees the run's resources when it exits (completion, error or cancellation), so the ring
 * is never freed under a running sink call; on completion or error it frees them before it signals, so a subscriber
 * reacting to the terminal signal (re-subscribing, closing the sink) finds the run released.
 *
 * <p>Reactive Streams guards, as {@link DeviceStageSubscriber} has them: after a terminal signal from upstream, a further
 * {@code onNext} goes to the {@code onNextDropped} hook and a further {@code onError} to {@code onErrorDropped}, and
 * neither reaches the sink or the downstream; a second {@code onComplete} is ignored. An {@code onNext} beyond the
 * demand this stage signalled (its queue is full) cancels upstream, goes to {@code onDiscard}, and terminates the
 * stream at once with an overflow error ({@link reactor.core.Exceptions#failWithOverflow}). Downstream never sees a
 * signal after its terminal one.
 *
 * <p>Events queued but never applied (after a cancellation or an error) go to the {@code onDiscard} hook.
 * {@link Scannable}: parent, actual, prefetch, buffered, requested from downstream, terminated, cancelled, error,
 * run style (asynchronous: the sink thread).
 */
final class SinkStage implements CoreSubscriber<Staged>, Subscription, Scannable {
    private static final AtomicLongFieldUpdater<SinkStage> REQUESTED = AtomicLongFieldUpdater.newUpdater(SinkStage.class, "requested");

    private final CoreSubscriber<? super EngineEvent> actual;
    private final PipelineRun run;
    private final SinkWaker waker;
    private final int prefetch;
    private final int limit;
    private final Queue<Staged> queue;
    /** The sink thread's wait; stateful, used by that thread only. */
    private final IdleStrategy idle;
    private Subscription upstream;
    private volatile long requested;
    /** Upstream signalled its terminal (or overflowed); written by the upstream's thread only. */
    private volatile boolean done;
    /** The upstream's error (written before {@link #done}), or null. */
    private Throwable error;
    /** Set (before {@link #done}) when upstream emitted beyond demand: the sink thread fails at once. */
    private volatile boolean overflowed;
    private volatile boolean cancelled;

    SinkStage(CoreSubscriber<? super EngineEvent> actual, PipelineRun run) {
        this.actual = actual;
        this.run = run;
        this.waker = run.waker();
        // a power of two, so the queue holds exactly prefetch events and its being full means demand was exceeded
        this.prefetch = Queues.ceilingNextPowerOfTwo(Math.max(16, 2 * run.spec().depth()));
        this.limit = prefetch - (prefetch >> 2);
        this.queue = Queues.<Staged>get(prefetch).get();
        this.idle = run.sinkIdle();
    }

    @Override
    public Context currentContext() {
        return actual.currentContext();
    }

    @Override
    public void onSubscribe(Subscription s) {
        if (Operators.validate(upstream, s)) {
            upstream = s;
            actual.onSubscribe(this);
            run.startSinkThread(this::drainLoop);
            s.request(prefetch);
        }
    }

    @Override
    public void onNext(Staged staged) {
        if (done) {
            Operators.onNextDropped(staged.event(), actual.currentContext());
            return;
        }
        if (cancelled) {
            Operators.onDiscard(staged.event(), actual.currentContext());
            return;
        }
        if (!queue.offer(staged)) {
            upstream.cancel();
            Operators.onDiscard(staged.event(), actual.currentContext());
            error = Exceptions.failWithOverflow("sink stage queue overflow: the device stage emitted beyond demand (prefetch " + prefetch + ")");
            overflowed = true;
            done = true;
            waker.wake();
            return;
        }
        waker.wake();
    }

    @Override
    public void onError(Throwable t) {
        if (done) {
            Operators.onErrorDropped(t, actual.currentContext());
            return;
        }
        error = t;
        done = true;
        waker.wake();
    }

    @Override
    public void onComplete() {
        if (done) {
            return;
        }
        done = true;
        waker.wake();
    }

    @Override
    public void request(long n) {
        if (Operators.validate(n)) {
            Operators.addCap(REQUESTED, this, n);
            waker.wake();
        }
    }

    @Override
    public void cancel() {
        if (!cancelled) {
            cancelled = true;
            upstream.cancel();
            waker.wake();
        }
    }

    /** The sink thread's loop. */
    private void drainLoop() {
        waker.attach(Thread.currentThread());
        int consumed = 0;
        try {
            for (;;) {
                if (cancelled) {
                    return;
                }
                if (overflowed) {
                    fail(error); // the queued events are discarded as the thread exits
                    return;
                }
                boolean terminated = done;
                Staged head = queue.peek();
                if (head == null) {
                    if (terminated) {
                        finish();
                        return;
                    }
                    park();
                    continue;
                }
                if (head instanceof RingSlot slot && !slot.isComplete() || requested == 0) {
                    park();
                    continue;
                }
                queue.poll();
                idle.reset();
                if (head instanceof RingSlot slot && slot.error() != null) {
                    fail(new CapturePipelineException(slot.event(), "device copy", slot.error()));
                    return;
                }
                EngineEvent acknowledged;
                try {
                    acknowledged = run.flush(head);
                } catch (Throwable t) {
                    fail(t);
                    return;
                }
                if (requested != Long.MAX_VALUE) {
                    REQUESTED.decrementAndGet(this);
                }
                actual.onNext(acknowledged);
                if (++consumed == limit) {
                    consumed = 0;
                    upstream.request(limit);
                }
            }
        } finally {
            // events staged but never applied: the onDiscard hook gets each (their ring slots are freed with the run)
            Operators.onDiscardQueueWithClear(queue, actual.currentContext(), staged -> Stream.of(staged.event()));
            run.sinkThreadExited();
        }
    }

    /** Normal end or an upstream error, once every queued event was flushed: release the run, then signal. */
    private void finish() {
        Throwable e = error;
        if (e == null) {
            try {
                run.flushSink();
            } catch (Throwable t) {
                fail(t);
                return;
            }
        } else {
            run.recordFailure(e);
        }
        Throwable releaseError = run.release();
        if (e == null && releaseError != null) {
            e = new IllegalStateException("closing the staging ring failed: " + releaseError.getMessage(), releaseError);
        }
        if (e != null) {
            actual.onError(e);
        } else {
            actual.onComplete();
        }
    }

    /** A failure on the sink thread: stop the engine's stream, release the run, then signal the error. */
    private void fail(Throwable t) {
        cancelled = true;
        run.recordFailure(t);
        upstream.cancel();
        Throwable releaseError = run.release();
        if (releaseError != null && releaseError != t) {
            t.addSuppressed(releaseError);
        }
        actual.onError(t);
    }

    private void park() {
        waker.parking(true);
        // re-check after announcing the park: a wake between the checks above and here is not lost
        Staged head = queue.peek();
        boolean ready = cancelled || overflowed || (head == null ? done : requested != 0 && (!(head instanceof RingSlot slot) || slot.isComplete()));
        if (!ready) {
            idle.idle(); // parks once past its first calls; a wake-up unparks it early
        }
        waker.parking(false);
    }

    @Override
    public Object scanUnsafe(Attr key) {
        if (key == Attr.PARENT) {
            return upstream;
        }
        if (key == Attr.ACTUAL) {
            return actual;
        }
        if (key == Attr.PREFETCH) {
            return prefetch;
        }
        if (key == Attr.BUFFERED) {
            return queue.size();
        }
        if (key == Attr.REQUESTED_FROM_DOWNSTREAM) {
            return requested;
        }
        if (key == Attr.TERMINATED) {
            return done && queue.isEmpty();
        }
        if (key == Attr.CANCELLED) {
            return cancelled;
        }
        if (key == Attr.ERROR) {
            return error;
        }
        if (key == Attr.RUN_STYLE) {
            return Attr.RunStyle.ASYNC;
        }
        return null;
    }

    @Override
    public String stepName() {
        return "r3SinkStage";
    }
}
