package dev.routingreplay.core.sink;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.device.RingSlotLayout;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.core.memory.NativeMemory;
import dev.routingreplay.core.memory.NativeOwnerGuard;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.BitSet;

/**
 * Off-heap rows keyed by KV-cache slot, with two flags per slot: written (the slot holds a state: a row or a missing
 * row) and missing (a step covered the slot but its row was dropped, see {@link RingSlotLayout#DROPPED_ROW}). A gather
 * never returns a row that was never written or was cleared (it throws), and reports a missing row as missing (its
 * bytes zero, its bit set), never as ids. Chunked, so pools larger than 2 GiB work. Single-threaded: the pipeline's sink thread
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
    private final BitSet missing;
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
        this.missing = new BitSet(slotCapacity);
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

    /**
     * Copies each row of {@code step} to its slot; a padding token (slot -1) is skipped and a dropped row (a slot word
     * below -1) marks its slot missing. Returns the rows stored (dropped rows not counted).
     */
    public int scatter(CapturedStep step) {
        guard.enter("scatter");
        try {
            ByteBuffer from = step.memory();
            int stored = 0;
            for (int t = 0, n = step.tokenCount(); t < n; t++) {
                int slot = step.slot(t);
                if (slot < 0) {
                    if (RingSlotLayout.isDropped(slot)) {
                        markMissing(RingSlotLayout.droppedSlot(slot));
                    }
                    continue;
                }
                chunk(slot).put(offset(slot), from, step.rowOffset(t), rowBytes);
                written.set(slot);
                missing.clear(slot);
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
            missing.clear(slot);
        } finally {
            guard.exit();
        }
    }

    /** Records {@code slot} as covered but missing (its row was dropped): a gather reports it as a missing row. */
    public void putMissing(int slot) {
        guard.enter("putMissing");
        try {
            checkSlot(slot, "slot");
            markMissing(slot);
        } finally {
            guard.exit();
        }
    }

    private void markMissing(int slot) {
        checkSlot(slot, "dropped row's slot");
        written.set(slot);
        missing.set(slot);
    }

    /** Whether {@code slot} was recorded as missing (written, but its row dropped). */
    public boolean isMissing(int slot) {
        guard.enter("isMissing");
        try {
            return missing.get(slot);
        } finally {
            guard.exit();
        }
    }

    /** Whether {@code slot} holds a row or a missing row. */
    public boolean isWritten(int slot) {
        guard.enter("isWritten");
        try {
            return written.get(slot);
        } finally {
            guard.exit();
        }
    }

    /**
     * Gathers the request's rows in token order into a new {@link RequestRouting} (rows on the heap, little endian),
     * missing rows marked.
     *
     * @throws IllegalStateException naming the first position whose slot holds no row (nothing is returned)
     */
    public RequestRouting gather(RequestFinished request) {
        ByteBuffer out = ByteBuffer.allocate(request.seqLen() * rowBytes).order(ByteOrder.LITTLE_ENDIAN);
        long[] missingRows = new long[RequestRouting.bitmapWords(request.seqLen())];
        int missingCount = gatherInto(request, out, missingRows);
        return new RequestRouting(request.requestId(), shape, shape.dtype(), request.seqLen(), out, missingCount == 0 ? null : missingRows);
    }

    /**
     * Gathers the request's rows in token order into {@code dst} at index 0 ({@code seqLen * rowBytes} bytes, its
     * position and limit untouched), and the positions whose slot is missing into {@code missingRows} (bit {@code p % 64}
     * of word {@code p / 64}; the words covering {@code seqLen} positions are overwritten, later ones untouched); a
     * missing row's bytes in {@code dst} are zero. Checks every slot first, so on failure {@code dst} is not written.
     * Allocates nothing.
     *
     * @return the number of missing rows
     * @throws IllegalStateException naming the first position whose slot holds no row
     * @throws IllegalArgumentException when a slot is out of range or {@code dst} or {@code missingRows} is too small
     */
    public int gatherInto(RequestFinished request, ByteBuffer dst, long[] missingRows) {
        guard.enter("gather");
        try {
            int[] slots = request.slots();
            if ((long) slots.length * rowBytes > dst.capacity()) {
                throw new IllegalArgumentException("gather buffer of " + dst.capacity() + " bytes is too small for " + slots.length + " rows");
            }
            int words = RequestRouting.bitmapWords(slots.length);
            if (missingRows.length < words) {
                throw new IllegalArgumentException("missing-row bitmap of " + missingRows.length + " words is too small for " + slots.length + " rows");
            }
            int missingCount = 0;
            for (int p = 0; p < slots.length; p++) {
                int slot = slots[p];
                if (slot < 0 || slot >= slotCapacity) {
                    checkSlot(slot, "request " + request.requestId() + " position " + p + " slot");
                }
                if (!written.get(slot)) {
                    throw new IllegalStateException("request " + request.requestId() + ": position " + p + " of " + slots.length
                            + " maps to slot " + slot + ", which holds no routing (never captured, or cleared)");
                }
                if (missing.get(slot)) {
                    missingCount++;
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
            for (int w = 0; w < words; w++) {
                missingRows[w] = 0L;
            }
            if (missingCount > 0) {
                for (int q = 0; q < slots.length; q++) {
                    if (missing.get(slots[q])) {
                        missingRows[q >>> 6] |= 1L << q;
                        for (int b = q * rowBytes, end = b + rowBytes; b < end; b++) {
                            dst.put(b, (byte) 0);
                        }
                    }
                }
            }
            return missingCount;
        } finally {
            guard.exit();
        }
    }

    /**
     * Applies a move: every source row is read before any destination is written; unwritten sources unwrite, missing
     * sources make their destination missing.
     */
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
            BitSet hadMissing = new BitSet(src.length);
            for (int i = 0; i < src.length; i++) {
                if (written.get(src[i])) {
                    snapshot.put(i * rowBytes, chunk(src[i]), offset(src[i]), rowBytes);
                    had.set(i);
                    hadMissing.set(i, missing.get(src[i]));
                }
            }
            for (int i = 0; i < dst.length; i++) {
                if (had.get(i)) {
                    chunk(dst[i]).put(offset(dst[i]), snapshot, i * rowBytes, rowBytes);
                    written.set(dst[i]);
                    missing.set(dst[i], hadMissing.get(i));
                } else {
                    written.clear(dst[i]);
                    missing.clear(dst[i]);
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
            missing.clear();
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
