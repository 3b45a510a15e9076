package dev.routingreplay.bridge;

import java.util.List;

/**
 * A message from the sidecar to the engine (docs/engine-bridge.md, protocol versions 1 to 3), encoded by
 * {@link FrameCodec}. Immutable records; unsigned wire integers are widened as in {@link EngineMessage}.
 */
public sealed interface SidecarMessage {
    /** The message's name in the protocol, e.g. {@code CONSUMED}. */
    String name();

    /**
     * The answer to HELLO.
     *
     * @param version protocol version
     * @param backend 0 host, 1 cuda
     * @param consumedEventHandles one handle per buffer, of the event the sidecar records after reading it (host:
     *     empty); copied in and out
     * @param store what the sidecar stores into (its folder), for the engine's logs
     */
    record Welcome(int version, int backend, List<byte[]> consumedEventHandles, String store) implements SidecarMessage {
        /** Copies the handles. */
        public Welcome {
            consumedEventHandles = consumedEventHandles.stream().map(byte[]::clone).toList();
        }

        /** Copies of the handles. */
        @Override
        public List<byte[]> consumedEventHandles() {
            return consumedEventHandles.stream().map(byte[]::clone).toList();
        }

        @Override
        public String name() {
            return "WELCOME";
        }
    }

    /**
     * The pipeline's read of buffer {@code buffer} for step {@code stepId} is enqueued (and, on the GPU, the consumed
     * event recorded after it): the engine may write the buffer again once its stream waits on that event.
     *
     * @param stepId the step ({@code u64})
     * @param buffer the buffer ({@code u16})
     */
    record Consumed(long stepId, int buffer) implements SidecarMessage {
        @Override
        public String name() {
            return "CONSUMED";
        }
    }

    /**
     * The session failed; the sidecar closes the connection after this.
     *
     * @param code what kind of failure ({@link FailureCode})
     * @param message what failed, naming the message type, field and value
     */
    record Failed(int code, String message) implements SidecarMessage {
        @Override
        public String name() {
            return "FAILED";
        }
    }

    /**
     * One request's fault (version 3): the lifecycle message named was refused and had no effect; the session and every
     * other request go on. Sent in engine order, after the effects of the messages before the refused one.
     *
     * @param code what kind of fault ({@link RequestErrorCode})
     * @param requestId the request it belongs to
     * @param message what was wrong, naming the id
     */
    record RequestError(int code, String requestId, String message) implements SidecarMessage {
        @Override
        public String name() {
            return "REQUEST_ERROR";
        }
    }

    /**
     * The answer to GOODBYE, sent once everything before it is stored.
     *
     * @param steps STEP messages stored in this session
     * @param tokens tokens of those steps
     * @param requestsFinished FINISHED messages stored in this session
     */
    record Farewell(long steps, long tokens, long requestsFinished) implements SidecarMessage {
        @Override
        public String name() {
            return "FAREWELL";
        }
    }
}
