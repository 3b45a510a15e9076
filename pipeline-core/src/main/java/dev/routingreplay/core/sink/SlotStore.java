package dev.routingreplay.core.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.memory.NativeMemory;
import dev.routingreplay.core.memory.NativeOwnerGuard;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.BitSet;

/**
 * Off-heap rows keyed by KV-cache slot, with a written flag per slot so a gather never returns a row that was never
 * written or was cleared. Chunked, so pools larger than 2 GiB work. Single-threaded: the pipeline's sink thread
 * owns it. {@link #close} may come from another thread: it waits for a running call to return, and every call after
 * it throws an {@link IllegalStateException} (never touches freed memory).
 */
public final class SlotStore implements AutoCloseable {
    private static final int MAX_CHUNK_BYTES = 1 << 30;

    private final RoutingShape shape;
    private final int slotCapacity;
    private final int rowBytes;
    private final int chunkShift;
    private final int chunkMask;
    private final ByteBuffer[] chunks;
    private final BitSet written;
    private final NativeMemory memory = new NativeMemory();
    private final NativeOwnerGuard guard;

    /** Allocates a store for slots {@code [0, slotCapacity)} of {@code shape}'s rows. */
    public SlotStore(RoutingShape shape, int slotCapacity) {
        this(shape, slotCapacity, MAX_CHUNK_BYTES);
    }

    /** As {@link #SlotStore(RoutingShape, int)}, with chunks of at most {@code maxChunkBytes} (tests use small ones). */
    SlotStore(RoutingShape shape, int slotCapacity, int maxChunkBytes) {
        if (slotCapacity < 1) {
            throw new IllegalArgumentException("slotCapacity must be positive, was " + slotCapacity);
        }
        this.shape = shape;
        this.slotCapacity = slotCapacity;
        this.rowBytes = shape.rowBytes();
        int shift = 30;
        while (shift > 0 && (1L << shift) * rowBytes > maxChunkBytes) {
            shift--;
        }
        this.chunkShift = shift;
        this.chunkMask = (1 << shift) - 1;
        int chunkCount = (int) (((long) slotCapacity + chunkMask) >>> shift);
        this.chunks = new ByteBuffer[chunkCount];
        for (int c = 0; c < chunkCount; c++) {
            long slotsInChunk = Math.min(1L << shift, slotCapacity - ((long) c << shift));
            chunks[c] = memory.allocate(Math.toIntExact(slotsInChunk * rowBytes));
        }
        this.written = new BitSet(slotCapacity);
        this.guard = new NativeOwnerGuard("slot store of " + slotCapacity + " slots");
    }

    /** Shape of the stored rows. */
    public RoutingShape shape() {
        return shape;
    }

    /** Slots this store holds. */
    public int slotCapacity() {
        return slotCapacity;
    }

    /** Copies each non-padding row of {@code step} to its slot; returns the rows stored. */
    public int scatter(CapturedStep step) {
        guard.enter("scatter");
        try {
            ByteBuffer from = step.memory();
            int stored = 0;
            for (int t = 0, n = step.tokenCount(); t < n; t++) {
                int slot = step.slot(t);
                if (slot < 0) {
                    continue;
                }
                chunk(slot).put(offset(slot), from, step.rowOffset(t), rowBytes);
                written.set(slot);
                stored++;
            }
            return stored;
        } finally {
            guard.exit();
        }
    }

    /** Stores one row (rowBytes bytes of {@code from} at {@code fromOffset}) at {@code slot}. */
    public void put(int slot, ByteBuffer from, int fromOffset) {
        guard.enter("put");
        try {
            checkSlot(slot, "slot");
            chunk(slot).put(offset(slot), from, fromOffset, rowBytes);
            written.set(slot);
        } finally {
            guard.exit();
        }
    }

    /** Whether {@code slot} holds a row. */
    public boolean isWritten(int slot) {
        guard.enter("isWritten");
        try {
            return written.get(slot);
        } finally {
            guard.exit();
        }
    }

    /**
     * Gathers the request's rows in token order into a new little-endian buffer of {@code seqLen * rowBytes}.
     *
     * @throws IllegalStateException naming the first position whose slot holds no row (nothing is returned)
     */
    public ByteBuffer gather(RequestFinished request) {
        ByteBuffer out = ByteBuffer.allocate(request.seqLen() * rowBytes).order(ByteOrder.LITTLE_ENDIAN);
        gatherInto(request, out);
        return out;
    }

    /**
     * Gathers the request's rows in token order into {@code dst} at index 0 ({@code seqLen * rowBytes} bytes, its
     * position and limit untouched). Checks every slot first, so on failure {@code dst} is not written.
     *
     * @throws IllegalStateException naming the first position whose slot holds no row
     * @throws IllegalArgumentException when a slot is out of range or {@code dst} is too small
     */
    public void gatherInto(RequestFinished request, ByteBuffer dst) {
        guard.enter("gather");
        try {
            int[] slots = request.slots();
            if ((long) slots.length * rowBytes > dst.capacity()) {
                throw new IllegalArgumentException("gather buffer of " + dst.capacity() + " bytes is too small for " + slots.length + " rows");
            }
            for (int p = 0; p < slots.length; p++) {
                int slot = slots[p];
                if (slot < 0 || slot >= slotCapacity) {
                    checkSlot(slot, "request " + request.requestId() + " position " + p + " slot");
                }
                if (!written.get(slot)) {
                    throw new IllegalStateException("request " + request.requestId() + ": position " + p + " of " + slots.length
                            + " maps to slot " + slot + ", which holds no routing (never captured, or cleared)");
                }
            }
            // runs of consecutive slots (a KV block) are copied at once
            int p = 0;
            while (p < slots.length) {
                int first = slots[p];
                int run = 1;
                while (p + run < slots.length && slots[p + run] == first + run && (first + run) >>> chunkShift == first >>> chunkShift) {
                    run++;
                }
                dst.put(p * rowBytes, chunk(first), offset(first), run * rowBytes);
                p += run;
            }
        } finally {
            guard.exit();
        }
    }

    /** Applies a move: every source row is read before any destination is written; unwritten sources unwrite. */
    public void move(SlotsMoved move) {
        guard.enter("move");
        try {
            int[] src = move.sourceSlots();
            int[] dst = move.destinationSlots();
            for (int i = 0; i < src.length; i++) {
                if (src[i] < 0 || src[i] >= slotCapacity || dst[i] < 0 || dst[i] >= slotCapacity) {
                    checkSlot(src[i], "sourceSlots[" + i + "]");
                    checkSlot(dst[i], "destinationSlots[" + i + "]");
                }
            }
            ByteBuffer snapshot = ByteBuffer.allocate(src.length * rowBytes);
            BitSet had = new BitSet(src.length);
            for (int i = 0; i < src.length; i++) {
                if (written.get(src[i])) {
                    snapshot.put(i * rowBytes, chunk(src[i]), offset(src[i]), rowBytes);
                    had.set(i);
                }
            }
            for (int i = 0; i < dst.length; i++) {
                if (had.get(i)) {
                    chunk(dst[i]).put(offset(dst[i]), snapshot, i * rowBytes, rowBytes);
                    written.set(dst[i]);
                } else {
                    written.clear(dst[i]);
                }
            }
        } finally {
            guard.exit();
        }
    }

    /** Marks every slot unwritten. */
    public void clear() {
        guard.enter("clear");
        try {
            written.clear();
        } finally {
            guard.exit();
        }
    }

    /** Frees the off-heap rows once a running call has returned. Idempotent; safe from any thread. */
    @Override
    public void close() {
        if (guard.close()) {
            for (ByteBuffer c : chunks) {
                memory.free(c);
            }
        }
    }

    private void checkSlot(int slot, String field) {
        if (slot < 0 || slot >= slotCapacity) {
            throw new IllegalArgumentException(field + " = " + slot + " is out of range [0, " + slotCapacity + ")");
        }
    }

    private ByteBuffer chunk(int slot) {
        return chunks[slot >>> chunkShift];
    }

    private int offset(int slot) {
        return (slot & chunkMask) * rowBytes;
    }
}
