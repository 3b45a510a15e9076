package dev.routingreplay.bridge;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestFault;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.StepFault;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * The protocol's state machine alone: messages in, pipeline calls and replies out, against a recording pipeline and a
 * recording connection (no threads, no device, no socket).
 */
class SessionProtocolTest {
    /** Every call the protocol made, in order, as text; the replies as messages. */
    private final List<String> calls = new ArrayList<>();
    private final List<SidecarMessage> sent = new ArrayList<>();
    private final List<SidecarMessage> answers = new ArrayList<>();
    private final List<String> log = new ArrayList<>();
    private Throwable pipelineError;

    private final SessionProtocol.Pipeline pipeline = new SessionProtocol.Pipeline() {
        @Override
        public List<byte[]> open(EngineMessage.Hello hello, RoutingShape shape) {
            calls.add("open " + shape.describe());
            return List.of(new byte[0], new byte[0]);
        }

        @Override
        public int bufferCount() {
            return 2;
        }

        @Override
        public int slotBytes() {
            return 4;
        }

        @Override
        public long step(long stepId, int buffer, int tokens, byte[] slots) {
            calls.add("step " + stepId + " buffer " + buffer + " tokens " + tokens + (slots == null ? "" : " slots " + slots.length));
            return 0;
        }

        @Override
        public long emit(EngineEvent event) {
            calls.add("emit " + event);
            return 0;
        }

        @Override
        public void drain() {
            calls.add("drain");
        }

        @Override
        public Throwable error() {
            return pipelineError;
        }
    };

    private final SessionProtocol.Replies replies = new SessionProtocol.Replies() {
        @Override
        public void send(SidecarMessage message) {
            sent.add(message);
        }

        @Override
        public void consumed(long stepId, int buffer) {
            calls.add("CONSUMED " + stepId + " " + buffer);
        }

        @Override
        public void answer(SidecarMessage message) {
            calls.add("answer " + message.name());
            answers.add(message);
        }
    };

    private final SessionProtocol protocol = new SessionProtocol(3, new SidecarServer.Settings(new HostDevice(), Backend.HOST, 0, 4, "memory",
            log::add, Duration.ofSeconds(1), s -> { }), pipeline, replies);

    private static EngineMessage.Hello hello(int version) {
        byte[] h = new byte[0];
        return new EngineMessage.Hello(version, Backend.HOST.code(), 0, 2, 2, 16, 4, 4, 8, "engine-a",
                List.of(new EngineMessage.ExportedBuffer(h, 0, 128, h, 0, 32, h), new EngineMessage.ExportedBuffer(h, 0, 128, h, 0, 32, h)));
    }

    private SidecarMessage.Failed onlyFailed() {
        assertEquals(1, answers.size(), "one terminal answer: " + answers);
        return (SidecarMessage.Failed) answers.get(0);
    }

    @Test
    void aMessageBeforeHelloIsRefusedAndNothingAfterItIsHandled() {
        protocol.onMessage(new EngineMessage.Aborted("r1"));
        protocol.onMessage(hello(3));
        assertEquals(FailureCode.PROTOCOL.code(), onlyFailed().code());
        assertEquals("ABORTED before HELLO", onlyFailed().message());
        assertEquals(List.of("answer FAILED"), calls, "nothing reached the pipeline");
        assertEquals(SessionSummary.Outcome.FAILED, protocol.summary("", Duration.ZERO).outcome());
    }

    @Test
    void helloIsWelcomedWithTheEngineVersionAndEachStepIsConsumedAfterThePipelineTookIt() {
        protocol.onMessage(hello(2));
        protocol.onMessage(new EngineMessage.Step(5, 1, 8));
        protocol.onMessage(new EngineMessage.Step(6, 0, 2, new byte[8]));
        protocol.onMessage(new EngineMessage.Aborted("r1"));
        assertEquals(List.of("open " + new RoutingShape(2, 2, 16).describe(), "step 5 buffer 1 tokens 8", "CONSUMED 5 1", "step 6 buffer 0 tokens 2 slots 8",
                "CONSUMED 6 0", "emit " + new RequestAborted("r1")), calls);
        SidecarMessage.Welcome welcome = (SidecarMessage.Welcome) sent.get(0);
        assertEquals(2, welcome.version());
        assertEquals(2, welcome.consumedEventHandles().size());
        assertEquals("memory", welcome.store());
        assertEquals(List.of(), answers);
        assertTrue(protocol.progress(Duration.ofSeconds(1)).startsWith("session 3 (engine engine-a): steps=2 tokens=10 finished=0"),
                protocol.progress(Duration.ofSeconds(1)));
    }

    @Test
    void stepsThatDoNotFitHelloAreRefused() {
        for (EngineMessage bad : List.of(new EngineMessage.Step(1, 2, 1), new EngineMessage.Step(1, 0, 9), new EngineMessage.Step(1, 0, 2, new byte[4]))) {
            SessionProtocol p = new SessionProtocol(3, new SidecarServer.Settings(new HostDevice(), Backend.HOST, 0, 4, "memory", log::add,
                    Duration.ofSeconds(1), s -> { }), pipeline, replies);
            answers.clear();
            p.onMessage(hello(2));
            p.onMessage(bad);
            assertEquals(FailureCode.PROTOCOL.code(), onlyFailed().code(), bad.toString());
        }
        assertTrue(onlyFailed().message().startsWith("STEP_SLOTS: 4 bytes of slots for tokens=2"), onlyFailed().message());
        answers.clear();
        SessionProtocol v1 = new SessionProtocol(3, new SidecarServer.Settings(new HostDevice(), Backend.HOST, 0, 4, "memory", log::add,
                Duration.ofSeconds(1), s -> { }), pipeline, replies);
        v1.onMessage(hello(1));
        v1.onMessage(new EngineMessage.Step(1, 0, 2, new byte[8]));
        assertTrue(onlyFailed().message().startsWith("STEP_SLOTS in a version 1 session"), onlyFailed().message());
        assertTrue(calls.stream().noneMatch(c -> c.startsWith("step")), "no refused step reached the pipeline: " + calls);
    }

    @Test
    void requestAndStepFaultsAreRequestErrorsForVersion3OnlyAndCountedForEveryVersion() {
        protocol.onMessage(hello(3));
        protocol.requestFault(new RequestFault("r9", new RequestAborted("r9"), "not live"));
        protocol.stepFault(new StepFault(4, 1, 0, 99, 0, -1));
        assertEquals(List.of(new SidecarMessage.RequestError(RequestErrorCode.NOT_LIVE.code(), "r9", "not live"),
                new SidecarMessage.RequestError(RequestErrorCode.STEP_FAULT.code(), "", new StepFault(4, 1, 0, 99, 0, -1).describe())),
                sent.subList(1, sent.size()));
        assertEquals(2, log.size() - 1, "both logged after the connect line: " + log);

        sent.clear();
        SessionProtocol v2 = new SessionProtocol(4, new SidecarServer.Settings(new HostDevice(), Backend.HOST, 0, 4, "memory", log::add,
                Duration.ofSeconds(1), s -> { }), pipeline, replies);
        v2.onMessage(hello(2));
        v2.requestFault(new RequestFault("r9", new RequestAborted("r9"), "not live"));
        assertEquals(1, sent.size(), "a version 2 engine gets WELCOME only: " + sent);
        assertEquals(1, v2.summary("", Duration.ZERO).requestErrors());
    }

    @Test
    void goodbyeDrainsBeforeFarewellAndTheFirstTerminalAnswerIsTheOnlyOne() {
        protocol.onMessage(hello(3));
        protocol.onMessage(new EngineMessage.Step(1, 0, 4));
        protocol.onMessage(new EngineMessage.Goodbye());
        assertEquals(List.of("drain", "answer FAREWELL"), calls.subList(calls.size() - 2, calls.size()), "drained before the answer");
        assertEquals(List.of(new SidecarMessage.Farewell(1, 4, 0)), answers);
        protocol.pipelineFailed(new IllegalStateException("late"));
        protocol.requestFault(new RequestFault("r9", new RequestAborted("r9"), "not live"));
        protocol.onMessage(new EngineMessage.Step(2, 0, 4));
        assertEquals(1, answers.size(), "nothing after the terminal answer: " + answers);
        assertEquals(1, sent.size(), "no REQUEST_ERROR after the terminal answer: " + sent);
        SessionSummary summary = protocol.summary("gone", Duration.ZERO);
        assertEquals(SessionSummary.Outcome.FAREWELL, summary.outcome());
        assertEquals(1, summary.steps());
    }

    @Test
    void aPipelineFailureIsFailedCode3AndLongMessagesAreCut() {
        protocol.onMessage(hello(3));
        pipelineError = new IllegalStateException("x".repeat(5000));
        protocol.pipelineFailed(pipelineError);
        SidecarMessage.Failed failed = onlyFailed();
        assertEquals(FailureCode.PIPELINE.code(), failed.code());
        assertEquals(SessionProtocol.MAX_MESSAGE_CHARS + 3, failed.message().length());
        SessionSummary summary = protocol.summary("gone", Duration.ZERO);
        assertEquals(SessionSummary.Outcome.FAILED, summary.outcome());
        assertEquals(failed.message(), summary.reason());
    }

    @Test
    void aSessionThatEndsWithoutAnAnswerIsDisconnected() {
        protocol.onMessage(hello(3));
        protocol.endOfInbound();
        protocol.onMessage(new EngineMessage.Step(1, 0, 4));
        protocol.stop();
        assertEquals(List.of(), answers, "a stop after the end of the inbound answers nothing");
        SessionSummary summary = protocol.summary("the engine disconnected without GOODBYE", Duration.ZERO);
        assertEquals(SessionSummary.Outcome.DISCONNECTED, summary.outcome());
        assertEquals("the engine disconnected without GOODBYE", summary.reason());
    }
}
