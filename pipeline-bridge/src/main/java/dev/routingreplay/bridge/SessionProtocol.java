package dev.routingreplay.bridge;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFault;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.pipeline.StepFault;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Supplier;

/**
 * The engine bridge protocol's state machine for one session (docs/engine-bridge.md): decoded {@link EngineMessage}s
 * in, pipeline calls and {@link SidecarMessage} replies out. It checks HELLO ({@link HelloCheck}) and answers WELCOME
 * with the engine's version; refuses a message before HELLO, a second HELLO, and a STEP whose buffer, tokens or
 * STEP_SLOTS (version 2+) do not fit HELLO; turns each other message into its engine event; answers a STEP with
 * CONSUMED once the pipeline took it; and ends the session with exactly one terminal answer (FAREWELL after GOODBYE,
 * or FAILED with a code and at most {@value #MAX_MESSAGE_CHARS} characters). Request and step faults are answered
 * REQUEST_ERROR to version 3 engines (for every version logged, the first {@value #LOGGED_REQUEST_ERRORS}, and
 * counted); the session goes on. After the terminal answer nothing more is fed (the engine may reuse its buffers).
 *
 * <p>It owns no thread and no resource: the {@link Pipeline} feeds, {@link Replies} writes, so it can be driven alone.
 * Threads: {@link #onMessage}, {@link #stop}, {@link #inboundFailed} on the session's feed thread, one at a time; the
 * pipeline's outcomes ({@link #requestFault}, {@link #stepFault}, {@link #pipelineFailed}) on its sink thread, which
 * may only answer FAILED; {@link #progress} and {@link #summary} from any thread.
 */
final class SessionProtocol {
    static final int MAX_MESSAGE_CHARS = 4000;
    static final int LOGGED_REQUEST_ERRORS = 10;

    /** What the protocol feeds: the session's pipeline ({@link SessionPipeline}). Feed thread only, but {@link #error}. */
    interface Pipeline {
        /** At a checked HELLO: opens the buffers and the pipeline; returns the consumed events' handles for WELCOME. */
        List<byte[]> open(EngineMessage.Hello hello, RoutingShape shape);
        /** N, the buffers HELLO announced. */
        int bufferCount();
        /** Bytes of one slot id (4 or 8). */
        int slotBytes();
        /** Feeds one step read from {@code buffer} (its slots from {@code slots} when not null); returns the wait for a ring slot in ns. */
        long step(long stepId, int buffer, int tokens, byte[] slots);
        /** Feeds one lifecycle event; returns the wait for the ring in ns. A failed pipeline is a {@link ProtocolException}. */
        long emit(EngineEvent event);
        /** Stores everything fed and frees what {@link #open} opened; once. */
        void drain();
        /** The error that ended the pipeline, or null. Any thread. */
        Throwable error();
    }

    /** Where the replies go: the engine's connection. */
    interface Replies {
        /** A non-terminal reply (WELCOME, REQUEST_ERROR). */
        void send(SidecarMessage message);
        /** CONSUMED(step, buffer): per step, so it has its own call that builds no message. */
        void consumed(long stepId, int buffer);
        /** The session's one terminal answer (FAILED or FAREWELL); the connection closes after it. */
        void answer(SidecarMessage message);
    }

    private final long id;
    private final SidecarServer.Settings settings;
    private final Pipeline pipeline;
    private final Replies replies;
    private final AtomicReference<SidecarMessage> answered = new AtomicReference<>();
    /** Requests refused as their own fault (REQUEST_ERROR), and step faults; written by the pipeline's sink thread. */
    private final AtomicLong requestErrors = new AtomicLong();
    private volatile String failure = "";
    private volatile String engineName = "";
    private volatile boolean welcomed;
    private volatile int version;
    // written by the feed thread only; volatile so that progress lines read them from another thread
    private volatile long steps;
    private volatile long tokens;
    private volatile long finished;
    private volatile long waitNanos;
    // confined to the feed thread
    private boolean ending;
    private boolean opened;
    private boolean goodbye;
    private long maxTokens;

    SessionProtocol(long id, SidecarServer.Settings settings, Pipeline pipeline, Replies replies) {
        this.id = id;
        this.settings = settings;
        this.pipeline = pipeline;
        this.replies = replies;
    }

    /** Handles one message, in order; ignored once the session is ending. Answers FAILED for any fault of the engine's. */
    void onMessage(EngineMessage m) {
        if (ending) {
            return;
        }
        try {
            if (m instanceof EngineMessage.Step s) {
                step(s);
            } else if (m instanceof EngineMessage.Hello h) {
                hello(h);
            } else if (!opened) {
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

    /** A frame that could not be decoded: FAILED with its code, unless the session is ending already. */
    void inboundFailed(ProtocolException e) {
        if (!ending) {
            fail(e.code(), e.getMessage());
        }
    }

    /** The server shuts down: FAILED code 4, unless the session is ending already. */
    void stop() {
        if (!ending) {
            fail(FailureCode.BUSY, "the sidecar is shutting down");
        }
    }

    /** The inbound ended (GOODBYE handled, or the connection closed): nothing more is handled. */
    void endOfInbound() {
        ending = true;
    }

    /** Whether GOODBYE was handled (its answer sent). */
    boolean saidGoodbye() {
        return goodbye;
    }

    private void hello(EngineMessage.Hello h) {
        if (opened) {
            throw new ProtocolException(FailureCode.PROTOCOL, "HELLO: a second HELLO in one session");
        }
        RoutingShape shape = HelloCheck.check(h, settings.backend(), settings.deviceOrdinal());
        engineName = h.engineName();
        List<byte[]> consumedHandles = pipeline.open(h, shape);
        opened = true;
        version = h.version();
        maxTokens = h.maxTokens();
        welcomed = true;
        replies.send(new SidecarMessage.Welcome(version, settings.backend().code(), consumedHandles, settings.storeName()));
        settings.log().accept("session " + id + ": engine " + h.engineName() + " connected, " + shape.describe() + ", " + h.buffers().size()
                + " buffers of " + h.maxTokens() + " tokens (ids " + h.idBytes() * 8 + "-bit, slots " + h.slotBytes() * 8 + "-bit), ring depth "
                + settings.ringDepth());
    }

    private void step(EngineMessage.Step s) {
        if (!opened) {
            throw new ProtocolException(FailureCode.PROTOCOL, s.name() + " before HELLO (step_id=" + Long.toUnsignedString(s.stepId()) + ")");
        }
        int b = s.buffer();
        if (b >= pipeline.bufferCount()) {
            throw new ProtocolException(FailureCode.PROTOCOL, s.name() + ": buffer=" + b + " is out of range for " + pipeline.bufferCount()
                    + " buffers (step_id=" + Long.toUnsignedString(s.stepId()) + ")");
        }
        if (s.tokens() > maxTokens) {
            throw new ProtocolException(FailureCode.PROTOCOL, s.name() + ": tokens=" + s.tokens() + " exceeds max_tokens=" + maxTokens + " (step_id="
                    + Long.toUnsignedString(s.stepId()) + ")");
        }
        if (s.slots() != null) {
            if (version < 2) {
                throw new ProtocolException(FailureCode.PROTOCOL, "STEP_SLOTS in a version " + version + " session (step_id="
                        + Long.toUnsignedString(s.stepId()) + "); it needs version 2");
            }
            long expected = s.tokens() * pipeline.slotBytes();
            if (s.slots().length != expected) {
                throw new ProtocolException(FailureCode.PROTOCOL, "STEP_SLOTS: " + s.slots().length + " bytes of slots for tokens=" + s.tokens()
                        + " of slot_bytes=" + pipeline.slotBytes() + " (expected " + expected + "; step_id=" + Long.toUnsignedString(s.stepId()) + ")");
            }
        }
        waitNanos += pipeline.step(s.stepId(), b, (int) s.tokens(), s.slots());
        replies.consumed(s.stepId(), b);
        steps++;
        tokens += s.tokens();
    }

    private void emit(EngineMessage m, Supplier<EngineEvent> source) {
        EngineEvent event;
        try {
            event = source.get();
        } catch (IllegalArgumentException e) {
            throw new ProtocolException(FailureCode.PROTOCOL, m.name() + ": " + e.getMessage(), e);
        }
        waitNanos += pipeline.emit(event);
    }

    /** GOODBYE: stores everything, then answers FAREWELL, or FAILED code 3 if the pipeline failed. */
    private void goodbye() {
        ending = true;
        goodbye = true;
        pipeline.drain();
        Throwable error = pipeline.error();
        if (error == null) {
            answer(new SidecarMessage.Farewell(steps, tokens, finished));
        } else {
            answer(new SidecarMessage.Failed(FailureCode.PIPELINE.code(), String.valueOf(error.getMessage())));
        }
    }

    private void fail(FailureCode code, String message) {
        ending = true;
        answer(new SidecarMessage.Failed(code.code(), message));
    }

    /** Sends the one terminal answer (a FAILED message cut to its limit), unless one was sent already. Any thread. */
    private void answer(SidecarMessage m) {
        if (m instanceof SidecarMessage.Failed f && f.message().length() > MAX_MESSAGE_CHARS) {
            m = new SidecarMessage.Failed(f.code(), f.message().substring(0, MAX_MESSAGE_CHARS) + "...");
        }
        if (!answered.compareAndSet(null, m)) {
            return;
        }
        if (m instanceof SidecarMessage.Failed f) {
            failure = f.message();
        }
        replies.answer(m);
    }

    /** A request's fault: REQUEST_ERROR code 1 (not live). */
    void requestFault(RequestFault fault) {
        reportError(new SidecarMessage.RequestError(RequestErrorCode.NOT_LIVE.code(), fault.requestId(), fault.message()));
    }

    /** A step with ids or slots out of range: REQUEST_ERROR code 2 (step fault) with no request id. */
    void stepFault(StepFault fault) {
        reportError(new SidecarMessage.RequestError(RequestErrorCode.STEP_FAULT.code(), "", fault.describe()));
    }

    /** The pipeline failed: FAILED code 3 with its error at once (unless an answer went already). */
    void pipelineFailed(Throwable error) {
        answer(new SidecarMessage.Failed(FailureCode.PIPELINE.code(), String.valueOf(error.getMessage())));
    }

    /** Logs the first {@value #LOGGED_REQUEST_ERRORS} errors, counts all, and sends them to version 3 engines. */
    private void reportError(SidecarMessage.RequestError error) {
        long n = requestErrors.incrementAndGet();
        if (n <= LOGGED_REQUEST_ERRORS) {
            settings.log().accept("session " + id + ": " + (error.requestId().isEmpty() ? "" : "request error: ") + error.message()
                    + (n == LOGGED_REQUEST_ERRORS ? " (later errors are counted, not logged)" : ""));
        }
        if (version >= 3 && answered.get() == null) {
            replies.send(error);
        }
    }

    /** One progress line, or null before WELCOME. */
    String progress(Duration elapsed) {
        if (!welcomed) {
            return null;
        }
        return String.format("session %d (engine %s): steps=%d tokens=%d finished=%d, feed waited %.1f ms for ring slots, %.0f s",
                id, engineName, steps, tokens, finished, waitNanos / 1e6, elapsed.toNanos() / 1e9);
    }

    /**
     * The session's summary: FAREWELL when that was the answer; FAILED when FAILED was sent or the pipeline failed (with
     * the message sent, or the pipeline's error); otherwise DISCONNECTED with {@code disconnect} as the reason.
     */
    SessionSummary summary(String disconnect, Duration elapsed) {
        SidecarMessage terminal = answered.get();
        Throwable error = pipeline.error();
        SessionSummary.Outcome outcome;
        String reason;
        if (terminal instanceof SidecarMessage.Farewell) {
            outcome = SessionSummary.Outcome.FAREWELL;
            reason = "";
        } else if (terminal != null || error != null) {
            outcome = SessionSummary.Outcome.FAILED;
            reason = failure.isEmpty() && error != null ? String.valueOf(error.getMessage()) : failure;
        } else {
            outcome = SessionSummary.Outcome.DISCONNECTED;
            reason = disconnect;
        }
        return new SessionSummary(id, engineName, outcome, reason, steps, tokens, finished, requestErrors.get(), waitNanos, elapsed);
    }
}
