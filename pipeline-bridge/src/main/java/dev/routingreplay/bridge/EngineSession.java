package dev.routingreplay.bridge;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFault;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.SlotMappingBuffer;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.pipeline.EngineFeed;
import dev.routingreplay.core.pipeline.StepFault;
import dev.routingreplay.core.sink.RoutingSink;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelFutureListener;
import java.io.IOException;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BiConsumer;
import org.reactivestreams.Subscription;
import reactor.core.publisher.BaseSubscriber;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Sinks;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * One engine connection: the HELLO handshake, then every message fed, in order, into a capture pipeline of its own.
 *
 * <p>Threads: Netty decodes frames on the connection's event loop; they reach this session through
 * {@code publishOn} with a prefetch of {@value #PREFETCH} on one dedicated thread, {@code r3-sidecar-feed-N}, which
 * runs every message handler, the pipeline's {@link EngineFeed#emit} (which waits while the ring is full) and the
 * end of the session. While that thread is behind, the prefetch queue stays full, Reactor Netty stops reading the
 * socket, and the engine's writes block: memory stays bounded and nothing is dropped. The pipeline's terminal signal
 * arrives on its sink thread, which may only send FAILED (at most one FAILED or FAREWELL is ever sent, whoever is
 * first). A request's fault (FINISHED or ABORTED of an id that is not live) is answered REQUEST_ERROR from that
 * thread (version 3; logged and counted for every version), and the session goes on.
 *
 * <p>Per STEP(k, b, tokens): {@code ready[b].waitOnCompute()}, {@code feed.emit(CaptureStep)} (the read of buffer b is
 * enqueued before it returns), {@code consumed[b].recordOnCompute()}, then CONSUMED(k, b). A STEP_SLOTS (version 2)
 * carries the slot mapping: after the wait its bytes are uploaded on the compute stream into this side's slot buffer b,
 * which the step reads instead of the engine's. The step's descriptors are built once at HELLO and reused. WELCOME
 * answers with the engine's version (1 or 2).
 *
 * <p>End: GOODBYE completes the feed, waits until the pipeline terminated and released its ring, closes the opened
 * buffers and events, and only then answers FAREWELL (or FAILED code 3 if the pipeline failed). A disconnect without
 * GOODBYE feeds everything already received, then ends the same way. After a FAILED nothing more is fed: the engine
 * may then overwrite its buffers.
 */
final class EngineSession {
    /** Messages decoded ahead of the feed thread; past this, Netty stops reading the socket. */
    static final int PREFETCH = 32;
    private static final int MAX_MESSAGE_CHARS = 4000;
    private static final int LOGGED_REQUEST_ERRORS = 10;

    private final long id;
    private final Channel channel;
    private final SidecarServer.Settings settings;
    private final SharedSink sharedSink;
    private final BiConsumer<EngineSession, SessionSummary> onEnd;
    private final long startNanos = System.nanoTime();
    private final Sinks.Empty<Void> ended = Sinks.empty();
    private final AtomicBoolean answered = new AtomicBoolean();
    private final CountDownLatch pipelineTerminated = new CountDownLatch(1);
    /**
     * The session's feed thread: a bounded-elastic scheduler of one thread, so the feed may block (a full ring) and
     * the Netty thread that hands messages over never does (its work queue never locks on offer, unlike a plain
     * executor's LinkedBlockingQueue, which BlockHound caught). Its task queue has no cap, but holds at most the
     * {@code publishOn} drain task and a shutdown request: the bound on memory is the prefetch of {@value #PREFETCH}.
     */
    private final Scheduler feedThread;
    private volatile String failure = "";
    private volatile ChannelFuture answerWritten;
    private volatile Throwable pipelineError;
    private volatile String engineName = "";
    private volatile boolean welcomed;
    private volatile boolean stopRequested;
    // written by the feed thread only; volatile so that progress lines read them from another thread
    private volatile long steps;
    private volatile long tokens;
    private volatile long finished;
    private volatile long waitNanos;
    /** Requests refused as their own fault (REQUEST_ERROR); written by the pipeline's sink thread. */
    private final AtomicLong requestErrors = new AtomicLong();
    // confined to the feed thread
    private boolean ending;
    private boolean tornDown;
    private boolean goodbye;
    private String disconnect = "the engine disconnected without GOODBYE";
    private EngineBuffers buffers;
    private CapturePipeline pipeline;
    private EngineFeed feed;
    private long maxTokens;
    private int version;

    EngineSession(long id, Channel channel, SidecarServer.Settings settings, SharedSink sharedSink,
            BiConsumer<EngineSession, SessionSummary> onEnd) {
        this.id = id;
        this.channel = channel;
        this.settings = settings;
        this.sharedSink = sharedSink;
        this.onEnd = onEnd;
        this.feedThread = Schedulers.newBoundedElastic(1, Integer.MAX_VALUE, "r3-sidecar-feed-" + id, 60, true);
    }

    /** This session's number in its server. */
    long id() {
        return id;
    }

    /**
     * Starts feeding {@code inbound} (decoded {@link EngineMessage}s, or a {@link ProtocolException} for a bad frame)
     * on the session's own thread. Subscribed here, not by Reactor Netty's handler, so the messages already received
     * are still delivered after the connection closed.
     *
     * @return completes once the session ended (everything stored or failed, buffers closed)
     */
    Mono<Void> start(Flux<?> inbound) {
        inbound.<EngineMessage>handle((o, sink) -> {
                    if (o instanceof EngineMessage m) {
                        sink.next(m);
                    } else if (o instanceof ProtocolException e) {
                        sink.error(e);
                    }
                })
                .publishOn(feedThread, PREFETCH)
                .subscribe(this::onMessage, this::onInboundError, this::onInboundComplete);
        return ended.asMono();
    }

    /** Frees a session that was never started (its connection was refused). */
    void discard() {
        feedThread.disposeGracefully().subscribe();
    }

    /**
     * Ends the session for a shutdown: after the messages the feed thread is handling now, it answers FAILED code 4,
     * closes the connection and stores what it fed. Any thread; returns at once.
     */
    void shutdown() {
        stopRequested = true;
        try {
            feedThread.schedule(this::stopIfRequested);
        } catch (RejectedExecutionException e) {
            // ended already
        }
    }

    /** On the feed thread, between two messages: answers a requested shutdown. */
    private void stopIfRequested() {
        if (stopRequested && !ending) {
            ending = true;
            answer(new SidecarMessage.Failed(FailureCode.BUSY.code(), "the sidecar is shutting down"));
        }
    }

    /** One progress line, or null before the handshake. Any thread. */
    String progress() {
        if (!welcomed) {
            return null;
        }
        return String.format("session %d (engine %s): steps=%d tokens=%d finished=%d, feed waited %.1f ms for ring slots, %.0f s",
                id, engineName, steps, tokens, finished, waitNanos / 1e6, (System.nanoTime() - startNanos) / 1e9);
    }

    // ---------------------------------------------------------------- feed thread

    private void onMessage(EngineMessage m) {
        stopIfRequested();
        if (ending) {
            return;
        }
        try {
            if (m instanceof EngineMessage.Step s) {
                step(s);
            } else if (m instanceof EngineMessage.Hello h) {
                hello(h);
            } else if (buffers == null) {
                throw new ProtocolException(FailureCode.PROTOCOL, m.name() + " before HELLO");
            } else if (m instanceof EngineMessage.Admitted a) {
                emit(m, () -> new RequestAdmitted(a.requestId(), (int) Math.min(Integer.MAX_VALUE, a.cachedTokens())));
            } else if (m instanceof EngineMessage.Finished f) {
                emit(m, () -> new RequestFinished(f.requestId(), f.slots()));
                finished++;
            } else if (m instanceof EngineMessage.Aborted a) {
                emit(m, () -> new RequestAborted(a.requestId()));
            } else if (m instanceof EngineMessage.SlotsMoved s) {
                emit(m, () -> new SlotsMoved(s.sources(), s.destinations()));
            } else if (m instanceof EngineMessage.RoundCleared r) {
                emit(m, () -> new RoundCleared(r.round()));
            } else if (m instanceof EngineMessage.Goodbye) {
                goodbye();
            }
        } catch (ProtocolException e) {
            fail(e.code(), e.getMessage());
        } catch (RuntimeException e) {
            fail(FailureCode.PIPELINE, "internal error handling " + m.name() + ": " + e);
        }
    }

    private void hello(EngineMessage.Hello h) {
        if (buffers != null) {
            throw new ProtocolException(FailureCode.PROTOCOL, "HELLO: a second HELLO in one session");
        }
        RoutingShape shape = HelloCheck.check(h, settings.backend(), settings.deviceOrdinal());
        engineName = h.engineName();
        RoutingSink sink = sharedSink.acquire(shape, h.maxTokens());
        buffers = EngineBuffers.open(settings.device(), h, shape);
        version = h.version();
        try {
            pipeline = CapturePipeline.builder().name("sidecar-" + id).device(settings.device()).sink(sink).ringDepth(settings.ringDepth())
                    .maxTokensPerStep((int) h.maxTokens()).onStepFault(this::stepFault).build();
        } catch (IllegalArgumentException e) {
            throw HelloCheck.refuse("max_tokens=" + h.maxTokens() + ": " + e.getMessage());
        }
        maxTokens = h.maxTokens();
        feed = new EngineFeed();
        feed.flux().transform(pipeline).subscribe(new PipelineOutcome());
        welcomed = true;
        send(new SidecarMessage.Welcome(version, settings.backend().code(), buffers.consumedHandles(), settings.storeName()));
        settings.log().accept("session " + id + ": engine " + h.engineName() + " connected, " + shape.describe() + ", " + h.buffers().size()
                + " buffers of " + h.maxTokens() + " tokens (ids " + h.idBytes() * 8 + "-bit, slots " + h.slotBytes() * 8 + "-bit), ring depth "
                + settings.ringDepth());
    }

    private void step(EngineMessage.Step s) {
        if (buffers == null) {
            throw new ProtocolException(FailureCode.PROTOCOL, s.name() + " before HELLO (step_id=" + Long.toUnsignedString(s.stepId()) + ")");
        }
        int b = s.buffer();
        if (b >= buffers.count()) {
            throw new ProtocolException(FailureCode.PROTOCOL, s.name() + ": buffer=" + b + " is out of range for " + buffers.count() + " buffers (step_id="
                    + Long.toUnsignedString(s.stepId()) + ")");
        }
        if (s.tokens() > maxTokens) {
            throw new ProtocolException(FailureCode.PROTOCOL, s.name() + ": tokens=" + s.tokens() + " exceeds max_tokens=" + maxTokens + " (step_id="
                    + Long.toUnsignedString(s.stepId()) + ")");
        }
        SlotMappingBuffer slots = buffers.slots(b);
        if (s.slots() != null) {
            if (version < 2) {
                throw new ProtocolException(FailureCode.PROTOCOL, "STEP_SLOTS in a version " + version + " session (step_id="
                        + Long.toUnsignedString(s.stepId()) + "); it needs version 2");
            }
            long expected = s.tokens() * buffers.slotBytes();
            if (s.slots().length != expected) {
                throw new ProtocolException(FailureCode.PROTOCOL, "STEP_SLOTS: " + s.slots().length + " bytes of slots for tokens=" + s.tokens()
                        + " of slot_bytes=" + buffers.slotBytes() + " (expected " + expected + "; step_id=" + Long.toUnsignedString(s.stepId()) + ")");
            }
        }
        buffers.ready(b).waitOnCompute();
        if (s.slots() != null) {
            slots = buffers.uploadSlots(b, s.slots());
        }
        waitNanos += feedEmit(new CaptureStep(s.stepId(), (int) s.tokens(), buffers.routing(b), slots));
        buffers.consumed(b).recordOnCompute();
        ByteBuf out = channel.alloc().ioBuffer(15);
        FrameCodec.encodeConsumed(s.stepId(), b, out);
        channel.writeAndFlush(out);
        steps++;
        tokens += s.tokens();
    }

    private interface EventSource {
        EngineEvent event();
    }

    private void emit(EngineMessage m, EventSource source) {
        EngineEvent event;
        try {
            event = source.event();
        } catch (IllegalArgumentException e) {
            throw new ProtocolException(FailureCode.PROTOCOL, m.name() + ": " + e.getMessage(), e);
        }
        waitNanos += feedEmit(event);
    }

    /** {@link EngineFeed#emit}, with a pipeline failure turned into FAILED code 3 carrying the pipeline's error. */
    private long feedEmit(EngineEvent event) {
        try {
            return feed.emit(event);
        } catch (IllegalStateException e) {
            Throwable cause = e.getCause() != null ? e.getCause() : e;
            throw new ProtocolException(FailureCode.PIPELINE, cause.getMessage(), e);
        }
    }

    /**
     * GOODBYE: stores everything, answers, and only once the answer left (or 5 s passed) reports the end, so a server
     * that is closed as soon as the session ended ({@code r3 sidecar --once}) never drops the FAREWELL.
     */
    private void goodbye() {
        ending = true;
        goodbye = true;
        SessionSummary summary = release();
        Throwable error = pipelineError;
        if (error == null) {
            answer(new SidecarMessage.Farewell(steps, tokens, finished));
        } else {
            answer(new SidecarMessage.Failed(FailureCode.PIPELINE.code(), String.valueOf(error.getMessage())));
        }
        ChannelFuture written = answerWritten;
        if (written != null) {
            written.awaitUninterruptibly(5, TimeUnit.SECONDS);
        }
        if (summary != null) {
            report(summary);
        }
    }

    private void fail(FailureCode code, String message) {
        ending = true;
        answer(new SidecarMessage.Failed(code.code(), message));
    }

    private void onInboundError(Throwable e) {
        if (e instanceof ProtocolException p) {
            if (!ending) {
                fail(p.code(), p.getMessage());
            }
        } else if (e instanceof IOException) {
            disconnect = "the engine disconnected without GOODBYE (" + e.getMessage() + ")";
        } else {
            disconnect = "connection error: " + e;
        }
        endOfInbound();
    }

    private void onInboundComplete() {
        endOfInbound();
    }

    private void endOfInbound() {
        ending = true;
        try {
            teardown();
        } finally {
            ChannelFuture written = answerWritten;
            if (written != null) {
                written.awaitUninterruptibly(5, TimeUnit.SECONDS); // the answer leaves before Reactor Netty closes the connection
            } else {
                channel.close();
            }
            ended.tryEmitEmpty();
            feedThread.disposeGracefully().subscribe();
        }
    }

    /**
     * Completes the feed, waits until the pipeline terminated and released its ring, closes what HELLO opened, and
     * reports the session's end to the server. Once.
     */
    private void teardown() {
        SessionSummary summary = release();
        if (summary != null) {
            report(summary);
        }
    }

    /** Logs the session's end and tells the server. */
    private void report(SessionSummary summary) {
        settings.log().accept(summary.describe());
        onEnd.accept(this, summary);
    }

    /** {@link #teardown()} but for the report: returns the session's summary, or null when it was released already. */
    private SessionSummary release() {
        if (tornDown) {
            return null;
        }
        tornDown = true;
        if (feed != null) {
            feed.complete();
            awaitUninterruptibly(pipelineTerminated);
            pipeline.released().block();
        }
        if (buffers != null) {
            try {
                buffers.close();
            } catch (RuntimeException e) {
                settings.log().accept("session " + id + ": " + e.getMessage());
            }
        }
        SessionSummary.Outcome outcome;
        String reason;
        if (goodbye && pipelineError == null && !answered.get()) {
            outcome = SessionSummary.Outcome.FAREWELL;
            reason = "";
        } else if (answered.get() || pipelineError != null) {
            outcome = SessionSummary.Outcome.FAILED;
            reason = failure.isEmpty() && pipelineError != null ? String.valueOf(pipelineError.getMessage()) : failure;
        } else {
            outcome = SessionSummary.Outcome.DISCONNECTED;
            reason = disconnect;
        }
        return new SessionSummary(id, engineName, outcome, reason, steps, tokens, finished, requestErrors.get(), waitNanos,
                Duration.ofNanos(System.nanoTime() - startNanos));
    }

    private static void awaitUninterruptibly(CountDownLatch latch) {
        boolean interrupted = false;
        while (true) {
            try {
                latch.await();
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
    }

    // ---------------------------------------------------------------- any thread

    private void send(SidecarMessage m) {
        ByteBuf out = channel.alloc().ioBuffer();
        FrameCodec.encode(m, out);
        channel.writeAndFlush(out);
    }

    /** Sends the session's one terminal answer (FAILED or FAREWELL) and closes the connection after it; false if one was sent already. */
    private boolean answer(SidecarMessage m) {
        if (!answered.compareAndSet(false, true)) {
            return false;
        }
        if (m instanceof SidecarMessage.Failed f) {
            String message = f.message().length() > MAX_MESSAGE_CHARS ? f.message().substring(0, MAX_MESSAGE_CHARS) + "..." : f.message();
            failure = message;
            m = new SidecarMessage.Failed(f.code(), message);
        }
        ByteBuf out = channel.alloc().ioBuffer();
        FrameCodec.encode(m, out);
        ChannelFuture written = channel.writeAndFlush(out);
        answerWritten = written;
        written.addListener(ChannelFutureListener.CLOSE);
        return true;
    }

    /** Sink thread: a step with ids or slots out of range: logged and counted like a request error, told to version 3 engines. */
    private void stepFault(StepFault fault) {
        reportError(new SidecarMessage.RequestError(RequestErrorCode.STEP_FAULT.code(), "", fault.describe()));
    }

    /** Sink thread: logs the first {@value #LOGGED_REQUEST_ERRORS} errors, counts all, and sends them to version 3 engines. */
    private void reportError(SidecarMessage.RequestError error) {
        long n = requestErrors.incrementAndGet();
        if (n <= LOGGED_REQUEST_ERRORS) {
            settings.log().accept("session " + id + ": " + (error.requestId().isEmpty() ? "" : "request error: ") + error.message()
                    + (n == LOGGED_REQUEST_ERRORS ? " (later errors are counted, not logged)" : ""));
        }
        if (version >= 3 && !answered.get()) {
            send(error);
        }
    }

    /**
     * The pipeline's output: a request's fault is answered REQUEST_ERROR (version 3 engines; every session logs the first
     * {@value #LOGGED_REQUEST_ERRORS} and counts them all), the rest is ignored but for the terminal signal; an error is
     * answered FAILED code 3 at once.
     */
    private final class PipelineOutcome extends BaseSubscriber<EngineEvent> {
        @Override
        protected void hookOnSubscribe(Subscription subscription) {
            subscription.request(Long.MAX_VALUE);
        }

        @Override
        protected void hookOnNext(EngineEvent event) {
            if (event instanceof RequestFault fault) {
                reportError(new SidecarMessage.RequestError(RequestErrorCode.NOT_LIVE.code(), fault.requestId(), fault.message()));
            }
        }

        @Override
        protected void hookOnComplete() {
            pipelineTerminated.countDown();
        }

        @Override
        protected void hookOnError(Throwable error) {
            pipelineError = error;
            pipelineTerminated.countDown();
            answer(new SidecarMessage.Failed(FailureCode.PIPELINE.code(), String.valueOf(error.getMessage())));
        }
    }

    /** Waits up to {@code timeout} for the end; true when it ended. */
    boolean awaitEnd(Duration timeout) {
        try {
            ended.asMono().block(timeout);
            return true;
        } catch (IllegalStateException e) {
            return false;
        }
    }
}
