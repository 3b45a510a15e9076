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

/**
 * Off-heap rows keyed by KV-cache slot, each with a write stamp, and the admissions of live requests: what a gather
 * needs to vouch for every row it returns (docs/contract.md).
 *
 * <p>Every step that reaches the store gets the next stamp ({@link #scatter}); a slot's stamp is the stamp of the
 * step that last wrote it (moves carry it along with the row), 0 when none did. A round clear only records where the
 * round began, so a row of an earlier round is told apart from one never written. A slot also keeps its row's state:
 * a row, or a row the store will never return (an expert id out of range, dropped by the pack; one expert twice in a
 * layer, found here). An admission records the stamp it arrived at and how many leading positions come from the
 * prefix cache. A gather returns a position's row as data only when its slot was written in the current round, by a
 * step after the request's admission and not gathered since by another request's finish at a position that request
 * computed (or, inside the cached prefix, by any step of the round), with a valid row; every other position is a
 * missing row with its {@link MissingReason}: a gather never fails for a row it cannot vouch for, and never returns
 * one. A gather then marks the slots of the positions its request computed as gathered.
 *
 * <p>Chunked, so pools larger than 2 GiB work. Single-threaded: the pipeline's sink thread owns it. {@link #close} may
 * come from another thread: it waits for a running call to return, and every call after it throws an
 * {@link IllegalStateException} (never touches freed memory).
 */
public final class SlotStore implements AutoCloseable {
    /** Heap bytes a store keeps per slot besides its row: the write stamp, the taken mark and the state. */
    public static final int HEAP_BYTES_PER_SLOT = 2 * Long.BYTES + 1;
    private static final int MAX_CHUNK_BYTES = 1 << 30;
    /** What a move gives a destination whose source is out of range: unwritten. */
    private static final long[] UNWRITTEN = new long[3];

    private final RoutingShape shape;
    private final int slotCapacity;
    private final int rowBytes;
    private final int chunkShift;
    private final int chunkMask;
    private final ByteBuffer[] chunks;
    private final SlotLedger ledger;
    private final DuplicateExperts duplicates;
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
        this.ledger = new SlotLedger(slotCapacity);
        this.duplicates = new DuplicateExperts(shape);
        for (int c = 0; c < chunkCount; c++) {
            long slotsInChunk = Math.min(1L << shift, slotCapacity - ((long) c << shift));
            chunks[c] = memory.allocate(Math.toIntExact(slotsInChunk * rowBytes));
        }
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
     * Applies one step: gives it the next stamp and copies each row to its slot, stamped. A padding token (slot -1) is
     * skipped; a row the pack dropped (a slot word below -1) makes its slot {@link MissingReason#INVALID_ID}; a row
     * that names one expert twice in a layer makes its slot {@link MissingReason#DUPLICATE_EXPERT}. Allocates nothing.
     *
     * @return the rows stored as data (dropped and duplicate rows not counted)
     * @throws IllegalArgumentException when a slot word names a slot outside {@code [0, slotCapacity)} (the pack never
     *     writes one); the slots before it are stamped already
     */
    public int scatter(CapturedStep step) {
        guard.enter("scatter");
        try {
            long now = ledger.nextStep();
            ByteBuffer from = step.memory();
            int stored = 0;
            for (int t = 0, n = step.tokenCount(); t < n; t++) {
                int slot = step.slot(t);
                if (slot < 0) {
                    if (RingSlotLayout.isDropped(slot)) {
                        int dropped = RingSlotLayout.droppedSlot(slot);
                        checkSlot(dropped, "dropped row's slot");
                        ledger.write(dropped, now, MissingReason.INVALID_ID.code());
                    }
                    continue;
                }
                checkSlot(slot, "slot");
                if (writeRow(slot, from, step.rowOffset(t), now)) {
                    stored++;
                }
            }
            return stored;
        } finally {
            guard.exit();
        }
    }

    /**
     * Stores one row (rowBytes bytes of {@code from} at {@code fromOffset}) at {@code slot}, stamped with the current
     * step (recovery replays a journalled step as {@link #beginStep()} and its rows); a row naming an expert twice in a
     * layer is stored as {@link MissingReason#DUPLICATE_EXPERT}.
     */
    public void put(int slot, ByteBuffer from, int fromOffset) {
        guard.enter("put");
        try {
            checkSlot(slot, "slot");
            writeRow(slot, from, fromOffset, ledger.currentStamp());
        } finally {
            guard.exit();
        }
    }

    /** Records {@code slot} as covered by the current step but missing for {@code reason} (an invalid id: the pack dropped the row). */
    public void putMissing(int slot, MissingReason reason) {
        guard.enter("putMissing");
        try {
            checkSlot(slot, "slot");
            ledger.write(slot, ledger.currentStamp(), reason.code());
        } finally {
            guard.exit();
        }
    }

    /** Starts a new step without rows (recovery replays a journalled step this way); returns its stamp. */
    public long beginStep() {
        guard.enter("beginStep");
        try {
            return ledger.nextStep();
        } finally {
            guard.exit();
        }
    }

    /**
     * Records that {@code requestId} was admitted now, its first {@code cachedTokens} positions coming from the prefix
     * cache: a later gather of it vouches for rows past the prefix only when a step after this admission wrote them. A
     * second admission of a live id replaces the first (a preempted request resumed, with the prefix it hit then).
     */
    public void admit(String requestId, int cachedTokens) {
        guard.enter("admit");
        try {
            if (cachedTokens < 0) {
                throw new IllegalArgumentException("request " + requestId + ": cachedTokens must not be negative, was " + cachedTokens);
            }
            ledger.admit(requestId, cachedTokens);
        } finally {
            guard.exit();
        }
    }

    /** Forgets the admission of {@code requestId} (an abort); nothing when it has none. */
    public void forget(String requestId) {
        guard.enter("forget");
        try {
            ledger.forget(requestId);
        } finally {
            guard.exit();
        }
    }

    /** Whether {@code requestId} has an admission the store still holds. */
    public boolean isAdmitted(String requestId) {
        guard.enter("isAdmitted");
        try {
            return ledger.admission(requestId) != null;
        } finally {
            guard.exit();
        }
    }

    /** Copies a row and stamps it; returns whether it is a row the store vouches for (no duplicate expert). */
    private boolean writeRow(int slot, ByteBuffer from, int fromOffset, long now) {
        chunk(slot).put(offset(slot), from, fromOffset, rowBytes);
        boolean valid = !duplicates.in(from, fromOffset);
        ledger.write(slot, now, valid ? SlotLedger.ROW : MissingReason.DUPLICATE_EXPERT.code());
        return valid;
    }

    /**
     * Missing rows with {@code reason} that gathers returned since the store was made; any thread (a plain read of a
     * counter the sink thread writes, for meters).
     */
    public long missingRowsGathered(MissingReason reason) {
        return ledger.missingRows(reason);
    }

    /** The reason {@code slot} would be missing in a gather that vouches for any row of the current round, or null. For tools and tests. */
    public MissingReason missingReason(int slot) {
        guard.enter("missingReason");
        try {
            return ledger.verdict(0, slot, 0, 0);
        } finally {
            guard.exit();
        }
    }

    /**
     * Gathers the request's rows in token order into a new {@link RequestRouting} (rows on the heap, little endian),
     * each position data or a missing row with its reason; the request stops being admitted. Never fails for a row it
     * cannot vouch for.
     */
    public RequestRouting gather(RequestFinished request) {
        return gather(request, true);
    }

    /**
     * The rows at {@code slots} now, as a request named {@code "slots"}: any row of the current round is data, the
     * others missing with their reason. Touches no admission and marks nothing gathered. For tools and tests.
     */
    public RequestRouting read(int... slots) {
        return gather(new RequestFinished("slots", slots), false);
    }

    private RequestRouting gather(RequestFinished request, boolean asFinish) {
        int n = request.seqLen();
        ByteBuffer out = ByteBuffer.allocate(n * rowBytes).order(ByteOrder.LITTLE_ENDIAN);
        long[] missingRows = new long[RequestRouting.bitmapWords(n)];
        byte[] reasons = new byte[n];
        int missingCount = asFinish ? gatherInto(request, out, missingRows, reasons) : readInto(request.slots(), out, missingRows, reasons);
        return new RequestRouting(request.requestId(), shape, shape.dtype(), n, out, missingCount == 0 ? null : missingRows,
                missingCount == 0 ? null : reasons);
    }

    /**
     * Gathers the request's rows in token order into {@code dst} at index 0 ({@code seqLen * rowBytes} bytes, its
     * position and limit untouched), the missing positions into {@code missingRows} (bit {@code p % 64} of word
     * {@code p / 64}; the words covering {@code seqLen} positions are overwritten, later ones untouched) and each
     * position's {@link MissingReason} code into {@code reasons[p]} (0 for data); a missing row's bytes in {@code dst}
     * are zero. The request's admission (see {@link #admit}) decides which rows it vouches for, and is then forgotten;
     * the slots of the positions past its cached prefix are marked gathered. A request with no admission (a tool's
     * read) vouches for any row of the current round and marks nothing. Allocates nothing.
     *
     * @return the number of missing rows
     * @throws IllegalArgumentException when {@code dst}, {@code missingRows} or {@code reasons} is too small (nothing
     *     is written)
     */
    public int gatherInto(RequestFinished request, ByteBuffer dst, long[] missingRows, byte[] reasons) {
        guard.enter("gather");
        try {
            long[] admission = ledger.admission(request.requestId());
            long admittedAt = admission == null ? 0 : admission[0];
            long cached = admission == null ? Long.MAX_VALUE : admission[1]; // no admission: any row of the round
            int missing = collect(request.slots(), dst, missingRows, reasons, admittedAt, cached, admission != null);
            ledger.forget(request.requestId());
            return missing;
        } finally {
            guard.exit();
        }
    }

    private int readInto(int[] slots, ByteBuffer dst, long[] missingRows, byte[] reasons) {
        guard.enter("read");
        try {
            return collect(slots, dst, missingRows, reasons, 0, Long.MAX_VALUE, false);
        } finally {
            guard.exit();
        }
    }

    private int collect(int[] slots, ByteBuffer dst, long[] missingRows, byte[] reasons, long admittedAt, long cached, boolean consume) {
        if ((long) slots.length * rowBytes > dst.capacity()) {
            throw new IllegalArgumentException("gather buffer of " + dst.capacity() + " bytes is too small for " + slots.length + " rows");
        }
        int words = RequestRouting.bitmapWords(slots.length);
        if (missingRows.length < words) {
            throw new IllegalArgumentException("missing-row bitmap of " + missingRows.length + " words is too small for " + slots.length + " rows");
        }
        if (reasons.length < slots.length) {
            throw new IllegalArgumentException("reason table of " + reasons.length + " bytes is too small for " + slots.length + " rows");
        }
        for (int w = 0; w < words; w++) {
            missingRows[w] = 0L;
        }
        int missingCount = 0;
        int p = 0;
        while (p < slots.length) {
            MissingReason why = ledger.verdict(p, slots[p], admittedAt, cached);
            if (why != null) {
                missingRows[p >>> 6] |= 1L << p;
                reasons[p] = why.code();
                ledger.counted(why);
                for (int b = p * rowBytes, end = b + rowBytes; b < end; b++) {
                    dst.put(b, (byte) 0);
                }
                missingCount++;
                p++;
                continue;
            }
            // runs of consecutive vouched slots (a KV block) are copied at once
            int first = slots[p];
            reasons[p] = 0;
            int run = 1;
            while (p + run < slots.length && slots[p + run] == first + run && (first + run) >>> chunkShift == first >>> chunkShift
                    && ledger.verdict(p + run, first + run, admittedAt, cached) == null) {
                reasons[p + run] = 0;
                run++;
            }
            dst.put(p * rowBytes, chunk(first), offset(first), run * rowBytes);
            p += run;
        }
        // the rows of the positions this request computed are its own now: another request's finish will not get them
        if (consume) {
            ledger.take(slots, reasons, (int) Math.min(cached, slots.length));
        }
        return missingCount;
    }

    /**
     * Applies a move: every source row is read before any destination is written; a destination takes its source's
     * row, stamp, gathered mark and state (an unwritten source unwrites it). A pair with a slot outside {@code [0, slotCapacity)} is
     * not applied, except that a bad source still unwrites a good destination (its content is no longer known).
     *
     * @return the number of pairs with a bad slot
     */
    public int move(SlotsMoved move) {
        guard.enter("move");
        try {
            int[] src = move.sourceSlots();
            int[] dst = move.destinationSlots();
            ByteBuffer snapshot = ByteBuffer.allocate(src.length * rowBytes);
            long[][] ledgerOf = new long[src.length][];
            int bad = 0;
            for (int i = 0; i < src.length; i++) {
                if (src[i] >= 0 && src[i] < slotCapacity) {
                    ledgerOf[i] = ledger.snapshot(src[i]);
                    if (ledger.isWritten(src[i])) {
                        snapshot.put(i * rowBytes, chunk(src[i]), offset(src[i]), rowBytes);
                    }
                }
            }
            for (int i = 0; i < dst.length; i++) {
                boolean badSource = src[i] < 0 || src[i] >= slotCapacity;
                if (badSource || dst[i] < 0 || dst[i] >= slotCapacity) {
                    bad++;
                    if (dst[i] < 0 || dst[i] >= slotCapacity) {
                        continue;
                    }
                }
                long[] of = ledgerOf[i] == null ? UNWRITTEN : ledgerOf[i];
                if (of[0] != 0) {
                    chunk(dst[i]).put(offset(dst[i]), snapshot, i * rowBytes, rowBytes);
                }
                ledger.restore(dst[i], of);
            }
            return bad;
        } finally {
            guard.exit();
        }
    }

    /**
     * Starts a new round: every row written so far becomes stale (a gather reports it as
     * {@link MissingReason#STALE_ROUND}) and no request stays admitted.
     */
    public void clear() {
        guard.enter("clear");
        try {
            ledger.newRound();
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
