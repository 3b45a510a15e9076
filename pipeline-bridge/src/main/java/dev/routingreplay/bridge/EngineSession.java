package dev.routingreplay.bridge;

import dev.routingreplay.core.event.RequestFault;
import dev.routingreplay.core.pipeline.EngineFeed;
import dev.routingreplay.core.pipeline.StepFault;
import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelFuture;
import io.netty.channel.ChannelFutureListener;
import java.io.IOException;
import java.time.Duration;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.BiConsumer;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Sinks;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * One engine connection: its decoded messages handed, in order, to the session's {@link SessionProtocol} (the
 * protocol's state machine) on a thread of its own, which drives the session's {@link SessionPipeline} (its capture
 * pipeline, buffers and teardown); replies go to the connection. This class owns the thread, the connection and the
 * end of the session; the two parts each have one job of their own.
 *
 * <p>Threads: Netty decodes frames on the connection's event loop; they reach this session through
 * {@code publishOn} with a prefetch of {@value #PREFETCH} on one dedicated thread, {@code r3-sidecar-feed-N}, which
 * runs every message handler, the pipeline's {@link EngineFeed#emit} (which waits while the ring is full) and the
 * end of the session. While that thread is behind, the prefetch queue stays full, Reactor Netty stops reading the
 * socket, and the engine's writes block: memory stays bounded and nothing is dropped. The pipeline's terminal signal
 * arrives on its sink thread, which may only send FAILED (at most one FAILED or FAREWELL is ever sent, whoever is
 * first). A request's fault (FINISHED or ABORTED of an id that is not live) or a step's fault is answered
 * REQUEST_ERROR from that thread (version 3; logged and counted for every version), and the session goes on.
 *
 * <p>Per STEP(k, b, tokens): {@code ready[b].waitOnCompute()}, {@code feed.emit(CaptureStep)} (the read of buffer b is
 * enqueued before it returns), {@code consumed[b].recordOnCompute()}, then CONSUMED(k, b). A STEP_SLOTS (version 2)
 * carries the slot mapping: after the wait its bytes are uploaded on the compute stream into this side's slot buffer b,
 * which the step reads instead of the engine's. The step's descriptors are built once at HELLO and reused. WELCOME
 * answers with the engine's version.
 *
 * <p>End: GOODBYE completes the feed, waits until the pipeline terminated and released its ring, closes the opened
 * buffers and events, and only then answers FAREWELL (or FAILED code 3 if the pipeline failed). A disconnect without
 * GOODBYE feeds everything already received, then ends the same way. After a FAILED nothing more is fed: the engine
 * may then overwrite its buffers.
 */
final class EngineSession {
    /** Messages decoded ahead of the feed thread; past this, Netty stops reading the socket. */
    static final int PREFETCH = 32;

    private final long id;
    private final Channel channel;
    private final SidecarServer.Settings settings;
    private final BiConsumer<EngineSession, SessionSummary> onEnd;
    private final long startNanos = System.nanoTime();
    private final Sinks.Empty<Void> ended = Sinks.empty();
    private final SessionPipeline pipeline;
    private final SessionProtocol protocol;
    /**
     * The session's feed thread: a bounded-elastic scheduler of one thread, so the feed may block (a full ring) and
     * the Netty thread that hands messages over never does (its work queue never locks on offer, unlike a plain
     * executor's LinkedBlockingQueue, which BlockHound caught). Its task queue has no cap, but holds at most the
     * {@code publishOn} drain task and a shutdown request: the bound on memory is the prefetch of {@value #PREFETCH}.
     */
    private final Scheduler feedThread;
    private volatile ChannelFuture answerWritten;
    private volatile boolean stopRequested;
    // confined to the feed thread
    private boolean reported;
    private String disconnect = "the engine disconnected without GOODBYE";

    EngineSession(long id, Channel channel, SidecarServer.Settings settings, SharedSink sharedSink,
            BiConsumer<EngineSession, SessionSummary> onEnd) {
        this.id = id;
        this.channel = channel;
        this.settings = settings;
        this.onEnd = onEnd;
        this.pipeline = new SessionPipeline(id, settings.device(), settings.ringDepth(), sharedSink, new Outcomes(), settings.log());
        this.protocol = new SessionProtocol(id, settings, pipeline, new ChannelReplies());
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
                .subscribe(this::onMessage, this::onInboundError, this::endOfInbound);
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

    /** One progress line, or null before the handshake. Any thread. */
    String progress() {
        return protocol.progress(elapsed());
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

    // ---------------------------------------------------------------- feed thread

    /** Between two messages: answers a requested shutdown. */
    private void stopIfRequested() {
        if (stopRequested) {
            protocol.stop();
        }
    }

    private void onMessage(EngineMessage m) {
        stopIfRequested();
        protocol.onMessage(m);
        if (protocol.saidGoodbye() && !reported) {
            // reported once the answer left (or 5 s passed): a server closed as soon as the session ended
            // (r3 sidecar --once) never drops the FAREWELL
            awaitAnswerWritten();
            report();
        }
    }

    private void onInboundError(Throwable e) {
        if (e instanceof ProtocolException p) {
            protocol.inboundFailed(p);
        } else if (e instanceof IOException) {
            disconnect = "the engine disconnected without GOODBYE (" + e.getMessage() + ")";
        } else {
            disconnect = "connection error: " + e;
        }
        endOfInbound();
    }

    /** Feeds nothing more, drains the pipeline, reports the end (once), and closes the connection after the answer. */
    private void endOfInbound() {
        protocol.endOfInbound();
        try {
            pipeline.drain();
            report();
        } finally {
            if (answerWritten != null) {
                awaitAnswerWritten(); // the answer leaves before Reactor Netty closes the connection
            } else {
                channel.close();
            }
            ended.tryEmitEmpty();
            feedThread.disposeGracefully().subscribe();
        }
    }

    private void awaitAnswerWritten() {
        ChannelFuture written = answerWritten;
        if (written != null) {
            written.awaitUninterruptibly(5, TimeUnit.SECONDS);
        }
    }

    /** Logs the session's end and tells the server; once, after the pipeline drained. */
    private void report() {
        if (reported) {
            return;
        }
        reported = true;
        SessionSummary summary = protocol.summary(disconnect, elapsed());
        settings.log().accept(summary.describe());
        onEnd.accept(this, summary);
    }

    private Duration elapsed() {
        return Duration.ofNanos(System.nanoTime() - startNanos);
    }

    // ---------------------------------------------------------------- wiring

    /** The protocol's replies, written to the connection; any thread. */
    private final class ChannelReplies implements SessionProtocol.Replies {
        @Override
        public void send(SidecarMessage m) {
            ByteBuf out = channel.alloc().ioBuffer();
            FrameCodec.encode(m, out);
            channel.writeAndFlush(out);
        }

        @Override
        public void consumed(long stepId, int buffer) {
            ByteBuf out = channel.alloc().ioBuffer(15);
            FrameCodec.encodeConsumed(stepId, buffer, out);
            channel.writeAndFlush(out);
        }

        @Override
        public void answer(SidecarMessage m) {
            ByteBuf out = channel.alloc().ioBuffer();
            FrameCodec.encode(m, out);
            ChannelFuture written = channel.writeAndFlush(out);
            answerWritten = written;
            written.addListener(ChannelFutureListener.CLOSE);
        }
    }

    /** The pipeline's outcomes, told to the protocol; on the pipeline's sink thread. */
    private final class Outcomes implements SessionPipeline.Listener {
        @Override
        public void requestFault(RequestFault fault) {
            protocol.requestFault(fault);
        }

        @Override
        public void stepFault(StepFault fault) {
            protocol.stepFault(fault);
        }

        @Override
        public void failed(Throwable error) {
            protocol.pipelineFailed(error);
        }
    }
}
