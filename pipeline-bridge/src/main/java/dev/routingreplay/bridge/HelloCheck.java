package dev.routingreplay.bridge;

import dev.routingreplay.core.RoutingShape;

/**
 * Validates a HELLO against the sidecar before anything is opened: version, backend, device, shape, dtypes, buffer
 * count and each buffer's size for {@code max_tokens}. Every refusal is a {@link ProtocolException} with code
 * {@link FailureCode#HELLO} naming the field and its value. Stateless.
 */
final class HelloCheck {
    /** Most engine buffers in the handshake ring. */
    static final int MAX_BUFFERS = 64;

    private HelloCheck() {
    }

    /**
     * Checks {@code hello} for a sidecar of {@code backend} on device {@code deviceOrdinal}.
     *
     * @return the routing shape it announces
     * @throws ProtocolException (code 2) naming the first bad field
     */
    static RoutingShape check(EngineMessage.Hello hello, Backend backend, int deviceOrdinal) {
        if (hello.version() < FrameCodec.OLDEST_VERSION || hello.version() > FrameCodec.VERSION) {
            throw refuse("version=" + hello.version() + ": this sidecar speaks versions " + FrameCodec.OLDEST_VERSION + " to " + FrameCodec.VERSION);
        }
        if (hello.backend() != Backend.HOST.code() && hello.backend() != Backend.CUDA.code()) {
            throw refuse("backend=" + hello.backend() + ": expected 0 (host) or 1 (cuda)");
        }
        if (hello.backend() != backend.code()) {
            throw refuse("backend=" + hello.backend() + " (" + Backend.of(hello.backend()).label() + ") but this sidecar runs the "
                    + backend.label() + " backend");
        }
        if (backend == Backend.CUDA ? hello.deviceOrdinal() != deviceOrdinal : hello.deviceOrdinal() != 0 && hello.deviceOrdinal() != -1) {
            throw refuse("device=" + hello.deviceOrdinal() + " but this sidecar runs on " + (backend == Backend.CUDA
                    ? "cuda device " + deviceOrdinal : "the host backend (device 0 or -1)"));
        }
        positive("layers", hello.layers());
        positive("top_k", hello.topK());
        if (hello.numExperts() < 1 || hello.numExperts() > Integer.MAX_VALUE) {
            throw refuse("num_experts=" + hello.numExperts() + " is not in 1.." + Integer.MAX_VALUE);
        }
        if (hello.topK() > hello.numExperts()) {
            throw refuse("top_k=" + hello.topK() + " exceeds num_experts=" + hello.numExperts());
        }
        if (hello.idBytes() != 4 && hello.idBytes() != 8) {
            throw refuse("id_bytes=" + hello.idBytes() + ": expected 4 (int32) or 8 (int64)");
        }
        if (hello.slotBytes() != 4 && hello.slotBytes() != 8) {
            throw refuse("slot_bytes=" + hello.slotBytes() + ": expected 4 (int32) or 8 (int64)");
        }
        if (hello.maxTokens() < 1 || hello.maxTokens() > Integer.MAX_VALUE) {
            throw refuse("max_tokens=" + hello.maxTokens() + " is not in 1.." + Integer.MAX_VALUE);
        }
        int n = hello.buffers().size();
        if (n < 1 || n > MAX_BUFFERS) {
            throw refuse("buffers=" + n + " is not in 1.." + MAX_BUFFERS);
        }
        RoutingShape shape;
        try {
            shape = new RoutingShape(hello.layers(), hello.topK(), (int) hello.numExperts());
        } catch (IllegalArgumentException e) {
            throw refuse("layers=" + hello.layers() + " top_k=" + hello.topK() + " num_experts=" + hello.numExperts() + ": " + e.getMessage());
        }
        long routingNeeded = hello.maxTokens() * shape.idsPerRow() * hello.idBytes();
        long slotsNeeded = hello.maxTokens() * hello.slotBytes();
        for (int i = 0; i < n; i++) {
            EngineMessage.ExportedBuffer b = hello.buffers().get(i);
            String f = "buffer[" + i + "].";
            nonNegative(f + "routing_offset", b.routingOffset());
            nonNegative(f + "slots_offset", b.slotsOffset());
            if (Long.compareUnsigned(b.routingBytes(), routingNeeded) < 0) {
                throw refuse(f + "routing_bytes=" + Long.toUnsignedString(b.routingBytes()) + " is too small: max_tokens="
                        + hello.maxTokens() + " x layers=" + hello.layers() + " x top_k=" + hello.topK() + " x id_bytes=" + hello.idBytes()
                        + " needs " + routingNeeded);
            }
            if (Long.compareUnsigned(b.slotsBytes(), slotsNeeded) < 0) {
                throw refuse(f + "slots_bytes=" + Long.toUnsignedString(b.slotsBytes()) + " is too small: max_tokens=" + hello.maxTokens()
                        + " x slot_bytes=" + hello.slotBytes() + " needs " + slotsNeeded);
            }
            nonNegative(f + "routing_bytes", b.routingBytes());
            nonNegative(f + "slots_bytes", b.slotsBytes());
        }
        return shape;
    }

    private static void positive(String field, long value) {
        if (value < 1) {
            throw refuse(field + "=" + value + " must be positive");
        }
    }

    private static void nonNegative(String field, long value) {
        if (value < 0) {
            throw refuse(field + "=" + Long.toUnsignedString(value) + " is out of range (at most " + Long.MAX_VALUE + ")");
        }
    }

    static ProtocolException refuse(String what) {
        return new ProtocolException(FailureCode.HELLO, "HELLO: " + what);
    }
}
