package dev.routingreplay.bridge;

import java.util.Arrays;
import java.util.List;

/**
 * A message from the engine to the sidecar (docs/engine-bridge.md, protocol version 1), decoded by
 * {@link FrameCodec}. Every message is an immutable record: arrays are copied in and out. Unsigned wire integers
 * are widened ({@code u16} and {@code u8} to {@code int}, {@code u32} to {@code long}); {@code u64} values stay in a
 * {@code long} and are printed unsigned.
 */
public sealed interface EngineMessage {
    /** The message's name in the protocol, e.g. {@code STEP}. */
    String name();

    /**
     * The handshake: the engine's shape, dtypes and its N buffers.
     *
     * @param version protocol version ({@code u16})
     * @param backend 0 host, 1 cuda ({@code u8})
     * @param deviceOrdinal the engine's device ({@code i32})
     * @param layers MoE layers ({@code u16})
     * @param topK ids per token and layer ({@code u16})
     * @param numExperts routed experts ({@code u32})
     * @param idBytes 4 or 8: the routing buffers' integer size ({@code u8})
     * @param slotBytes 4 or 8: the slot buffers' integer size ({@code u8})
     * @param maxTokens tokens each buffer holds ({@code u32})
     * @param engineName the engine's name, for logs
     * @param buffers the engine's buffers, {@code N = buffers.size()} ({@code u16} on the wire)
     */
    record Hello(int version, int backend, int deviceOrdinal, int layers, int topK, long numExperts, int idBytes, int slotBytes,
            long maxTokens, String engineName, List<ExportedBuffer> buffers) implements EngineMessage {
        /** Copies {@code buffers}. */
        public Hello {
            buffers = List.copyOf(buffers);
        }

        @Override
        public String name() {
            return "HELLO";
        }
    }

    /**
     * One of the engine's N buffers: where its routing and slots live (a memory handle, an offset in that allocation,
     * a size) and the event the engine records after writing them.
     *
     * @param routingHandle memory handle of the routing (CUDA: 64 bytes; host: a file path)
     * @param routingOffset byte offset of the routing in that allocation ({@code u64})
     * @param routingBytes bytes of routing ({@code u64})
     * @param slotsHandle memory handle of the slot mapping
     * @param slotsOffset byte offset of the slots ({@code u64})
     * @param slotsBytes bytes of slots ({@code u64})
     * @param readyEventHandle the event the engine records after writing the buffer (host: empty)
     */
    record ExportedBuffer(byte[] routingHandle, long routingOffset, long routingBytes, byte[] slotsHandle, long slotsOffset,
            long slotsBytes, byte[] readyEventHandle) {
        /** Copies the handles. */
        public ExportedBuffer {
            routingHandle = routingHandle.clone();
            slotsHandle = slotsHandle.clone();
            readyEventHandle = readyEventHandle.clone();
        }

        /** A copy of the routing handle. */
        @Override
        public byte[] routingHandle() {
            return routingHandle.clone();
        }

        /** A copy of the slots handle. */
        @Override
        public byte[] slotsHandle() {
            return slotsHandle.clone();
        }

        /** A copy of the ready event's handle. */
        @Override
        public byte[] readyEventHandle() {
            return readyEventHandle.clone();
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof ExportedBuffer b && Arrays.equals(b.routingHandle, routingHandle) && b.routingOffset == routingOffset
                    && b.routingBytes == routingBytes && Arrays.equals(b.slotsHandle, slotsHandle) && b.slotsOffset == slotsOffset
                    && b.slotsBytes == slotsBytes && Arrays.equals(b.readyEventHandle, readyEventHandle);
        }

        @Override
        public int hashCode() {
            return Arrays.hashCode(routingHandle) * 31 + Long.hashCode(routingOffset);
        }

        @Override
        public String toString() {
            return "ExportedBuffer[routing " + routingHandle.length + "-byte handle +" + Long.toUnsignedString(routingOffset) + " "
                    + Long.toUnsignedString(routingBytes) + " bytes, slots " + slotsHandle.length + "-byte handle +"
                    + Long.toUnsignedString(slotsOffset) + " " + Long.toUnsignedString(slotsBytes) + " bytes]";
        }
    }

    /**
     * Buffer {@code buffer} holds the routing of step {@code stepId}'s first {@code tokens} tokens, and its slots
     * (STEP), or the message carries the slots itself (STEP_SLOTS, protocol version 2: the engine's slot mapping of
     * {@code tokens} integers of HELLO's {@code slot_bytes}, little-endian; the engine's slots buffer is not read).
     *
     * @param stepId the engine's step id ({@code u64})
     * @param buffer index of the buffer, below N ({@code u16})
     * @param tokens tokens of the step ({@code u32})
     * @param slots STEP_SLOTS: the slot mapping's bytes as sent (checked against HELLO by the session); STEP: null
     */
    record Step(long stepId, int buffer, long tokens, byte[] slots) implements EngineMessage {
        /** A STEP: the slots are in the engine's buffer. */
        public Step(long stepId, int buffer, long tokens) {
            this(stepId, buffer, tokens, null);
        }

        @Override
        public String name() {
            return slots == null ? "STEP" : "STEP_SLOTS";
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Step s && s.stepId == stepId && s.buffer == buffer && s.tokens == tokens && Arrays.equals(s.slots, slots);
        }

        @Override
        public int hashCode() {
            return (Long.hashCode(stepId) * 31 + buffer) * 31 + Long.hashCode(tokens) * 31 + Arrays.hashCode(slots);
        }

        @Override
        public String toString() {
            return name() + "[stepId=" + Long.toUnsignedString(stepId) + ", buffer=" + buffer + ", tokens=" + tokens
                    + (slots == null ? "" : ", " + slots.length + " slot bytes") + "]";
        }
    }

    /**
     * A request entered the engine (ADMITTED, or ADMITTED_CACHED in version 3 when part of its prompt came from the
     * prefix cache); fed to the pipeline after every STEP sent before it.
     *
     * @param requestId the request, not empty
     * @param cachedTokens leading positions served from the prefix cache ({@code u32}); 0 for ADMITTED
     */
    record Admitted(String requestId, long cachedTokens) implements EngineMessage {
        /** An admission with nothing cached (ADMITTED). */
        public Admitted(String requestId) {
            this(requestId, 0);
        }

        @Override
        public String name() {
            return "ADMITTED";
        }
    }

    /**
     * A request finished.
     *
     * @param requestId the request
     * @param slots its slots in token order (prompt then output, without the final token); copied in and out
     */
    record Finished(String requestId, int[] slots) implements EngineMessage {
        /** Copies {@code slots}. */
        public Finished {
            slots = slots.clone();
        }

        /** A copy of the slots. */
        @Override
        public int[] slots() {
            return slots.clone();
        }

        @Override
        public String name() {
            return "FINISHED";
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof Finished f && f.requestId.equals(requestId) && Arrays.equals(f.slots, slots);
        }

        @Override
        public int hashCode() {
            return requestId.hashCode() * 31 + Arrays.hashCode(slots);
        }

        @Override
        public String toString() {
            return "Finished[" + requestId + ", " + slots.length + " slots]";
        }
    }

    /**
     * A request ended without a record (ABORTED): nothing of it is stored.
     *
     * @param requestId the request
     */
    record Aborted(String requestId) implements EngineMessage {
        @Override
        public String name() {
            return "ABORTED";
        }
    }

    /**
     * KV blocks moved: the routing at {@code sources[i]} now belongs to {@code destinations[i]}.
     *
     * @param sources slots the rows come from; copied in and out
     * @param destinations slots they go to, same length; copied in and out
     */
    record SlotsMoved(int[] sources, int[] destinations) implements EngineMessage {
        /** Copies both arrays. */
        public SlotsMoved {
            sources = sources.clone();
            destinations = destinations.clone();
        }

        /** A copy of the sources. */
        @Override
        public int[] sources() {
            return sources.clone();
        }

        /** A copy of the destinations. */
        @Override
        public int[] destinations() {
            return destinations.clone();
        }

        @Override
        public String name() {
            return "SLOTS_MOVED";
        }

        @Override
        public boolean equals(Object o) {
            return o instanceof SlotsMoved m && Arrays.equals(m.sources, sources) && Arrays.equals(m.destinations, destinations);
        }

        @Override
        public int hashCode() {
            return Arrays.hashCode(sources) * 31 + Arrays.hashCode(destinations);
        }

        @Override
        public String toString() {
            return "SlotsMoved[" + sources.length + " slots]";
        }
    }

    /**
     * An RL round ended and the engine's prefix cache was reset (ROUND_CLEARED).
     *
     * @param round the round ({@code u64})
     */
    record RoundCleared(long round) implements EngineMessage {
        @Override
        public String name() {
            return "ROUND_CLEARED";
        }
    }

    /** The engine is done: store everything, answer FAREWELL. */
    record Goodbye() implements EngineMessage {
        @Override
        public String name() {
            return "GOODBYE";
        }
    }
}
