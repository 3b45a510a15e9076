package dev.routingreplay.bridge;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.InterprocessDevice;
import dev.routingreplay.core.device.InterprocessEvent;
import dev.routingreplay.core.device.UploadStaging;
import dev.routingreplay.core.event.RoutingBuffer;
import dev.routingreplay.core.event.SlotMappingBuffer;
import dev.routingreplay.core.memory.DeviceBuffer;
import java.util.ArrayList;
import java.util.List;

/**
 * The engine's N buffers as this process opened them: per buffer its routing and slot mapping (descriptors the
 * pipeline reads, built once and reused by every step), the engine's ready event and the consumed event this side
 * records. Opened from a validated HELLO; {@link #close} releases everything this process opened (never the engine's
 * memory) and must run only after the pipeline released its ring. Confined to the session's feed thread.
 */
final class EngineBuffers implements AutoCloseable {
    private final RoutingBuffer[] routing;
    private final SlotMappingBuffer[] slots;
    private final InterprocessEvent[] ready;
    private final InterprocessEvent[] consumed;
    private final SlotMappingBuffer[] sentSlots;
    private final UploadStaging[] slotStaging;
    private final List<AutoCloseable> opened;
    private final int slotBytes;
    private boolean closed;

    private EngineBuffers(int n, int slotBytes, List<AutoCloseable> opened) {
        this.routing = new RoutingBuffer[n];
        this.slots = new SlotMappingBuffer[n];
        this.ready = new InterprocessEvent[n];
        this.consumed = new InterprocessEvent[n];
        this.sentSlots = new SlotMappingBuffer[n];
        this.slotStaging = new UploadStaging[n];
        this.slotBytes = slotBytes;
        this.opened = opened;
    }

    /**
     * Opens every buffer and event of {@code hello} (already checked by {@link HelloCheck}) on {@code device}, and
     * creates one consumed event per buffer. On any failure closes what it opened.
     *
     * @throws ProtocolException (code 2) naming the buffer and handle the device refused
     */
    static EngineBuffers open(InterprocessDevice device, EngineMessage.Hello hello, RoutingShape shape) {
        int n = hello.buffers().size();
        EngineBuffers b = new EngineBuffers(n, hello.slotBytes(), new ArrayList<>(6 * n));
        ElementType idType = hello.idBytes() == 4 ? ElementType.INT32 : ElementType.INT64;
        ElementType slotType = hello.slotBytes() == 4 ? ElementType.INT32 : ElementType.INT64;
        try {
            for (int i = 0; i < n; i++) {
                EngineMessage.ExportedBuffer e = hello.buffers().get(i);
                String f = "buffer[" + i + "].";
                DeviceBuffer r = b.track(f + "routing_handle", () -> device.openExportedBuffer(e.routingHandle(), e.routingOffset(), e.routingBytes()));
                b.routing[i] = new RoutingBuffer(r, idType, shape.moeLayers(), shape.topK());
                DeviceBuffer s = b.track(f + "slots_handle", () -> device.openExportedBuffer(e.slotsHandle(), e.slotsOffset(), e.slotsBytes()));
                b.slots[i] = new SlotMappingBuffer(s, slotType);
                b.ready[i] = b.track(f + "ready_event_handle", () -> device.openExportedEvent(e.readyEventHandle()));
            }
            for (int i = 0; i < n; i++) {
                b.consumed[i] = b.track("consumed event " + i, device::createExportedEvent);
            }
            if (hello.version() >= 2) {
                // STEP_SLOTS: the slots that came in the message go to this side's own buffer, never into the engine's
                int bytes = Math.toIntExact(hello.maxTokens() * hello.slotBytes());
                for (int i = 0; i < n; i++) {
                    DeviceBuffer own = b.track("slot buffer " + i + " (" + bytes + " bytes)", () -> device.allocate(bytes));
                    b.sentSlots[i] = new SlotMappingBuffer(own, slotType);
                    b.slotStaging[i] = b.track("slot staging " + i + " (" + bytes + " bytes)", () -> device.openUploadStaging(bytes));
                }
            }
            return b;
        } catch (RuntimeException | Error e) {
            b.close();
            throw e;
        }
    }

    private interface Opener<T extends AutoCloseable> {
        T open();
    }

    private <T extends AutoCloseable> T track(String what, Opener<T> opener) {
        T t;
        try {
            t = opener.open();
        } catch (RuntimeException e) {
            throw HelloCheck.refuse(what + ": " + e.getMessage());
        }
        opened.add(t);
        return t;
    }

    /** Buffers in the ring (N). */
    int count() {
        return routing.length;
    }

    /** Buffer {@code b}'s routing descriptor. */
    RoutingBuffer routing(int b) {
        return routing[b];
    }

    /** Buffer {@code b}'s slot mapping descriptor. */
    SlotMappingBuffer slots(int b) {
        return slots[b];
    }

    /** Bytes of one slot in the engine's slot mapping (HELLO's {@code slot_bytes}). */
    int slotBytes() {
        return slotBytes;
    }

    /**
     * Enqueues the upload of a STEP_SLOTS message's slot bytes for buffer {@code b} into this side's slot buffer
     * {@code b} on the compute stream, and returns that buffer's descriptor for the step. Blocks only while the previous
     * upload of {@code b} has not yet read its staging (it normally has, N steps ago). The pipeline's read of the
     * previous step of {@code b} was enqueued on the same stream before, so it is never overwritten before read.
     */
    SlotMappingBuffer uploadSlots(int b, byte[] bytes) {
        UploadStaging staging = slotStaging[b];
        staging.awaitCopied();
        staging.buffer().put(0, bytes);
        staging.enqueueCopyTo(sentSlots[b].buffer(), bytes.length);
        return sentSlots[b];
    }

    /** The event the engine records after writing buffer {@code b}. */
    InterprocessEvent ready(int b) {
        return ready[b];
    }

    /** The event this side records after the read of buffer {@code b} was enqueued. */
    InterprocessEvent consumed(int b) {
        return consumed[b];
    }

    /** The consumed events' handles, for WELCOME. */
    List<byte[]> consumedHandles() {
        List<byte[]> handles = new ArrayList<>(consumed.length);
        for (InterprocessEvent e : consumed) {
            handles.add(e.handle());
        }
        return handles;
    }

    /** Closes every event and buffer this process opened, events first; the first failure is rethrown after all were tried. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        RuntimeException first = null;
        for (int i = opened.size() - 1; i >= 0; i--) {
            try {
                opened.get(i).close();
            } catch (Exception e) {
                if (first == null) {
                    first = new IllegalStateException("closing the engine's " + opened.get(i) + " failed: " + e.getMessage(), e);
                }
            }
        }
        if (first != null) {
            throw first;
        }
    }
}
