package dev.routingreplay.core.sink;

import java.util.HashMap;
import java.util.Map;

/**
 * What the slot store knows of each slot's row, and of each live request, to vouch for a row (docs/contract.md): the
 * stamp of the step that last wrote the slot (0: never), the row's state (a row, or the {@link MissingReason} of a row
 * it will not return), the stamp at which a finish last took the slot as a row its request computed, where the current
 * round began, and per live request the stamp of its admission and its cached prefix. Every step gets the next stamp.
 * On the heap, {@link SlotStore#HEAP_BYTES_PER_SLOT} bytes a slot. One thread (the slot store's).
 */
final class SlotLedger {
    /** A slot's state: a row the store vouches for (subject to its stamps). Other states are {@link MissingReason} codes. */
    static final byte ROW = 0;

    private final int slotCapacity;
    /** Stamp of the step that last wrote each slot; 0 = never written. */
    private final long[] written;
    /** The stamp at which a finish last took each slot as a row its request computed (past its cached prefix); 0 = never. */
    private final long[] taken;
    /** {@link #ROW}, or the {@link MissingReason} code of a row the store will not return. */
    private final byte[] states;
    /** Admission of each live request: {stamp, cachedTokens}. */
    private final Map<String, long[]> admissions = new HashMap<>();
    /** Missing rows verdicts gave so far, by reason code. */
    private final long[] missing = new long[MissingReason.values().length + 1];
    /** The stamp of the last step; 0 before the first. */
    private long stamp;
    /** The stamp of the last step before the current round began; rows written at or below it are stale. */
    private long roundStart;

    SlotLedger(int slotCapacity) {
        this.slotCapacity = slotCapacity;
        this.written = new long[slotCapacity];
        this.taken = new long[slotCapacity];
        this.states = new byte[slotCapacity];
    }

    /** A new step; returns its stamp. */
    long nextStep() {
        return ++stamp;
    }

    /** The stamp rows written now get: the last step's, or a new step's when none began in this round. */
    long currentStamp() {
        return stamp == roundStart ? ++stamp : stamp;
    }

    /** {@code slot} (in range) was written by step {@code now} with {@code state}. */
    void write(int slot, long now, byte state) {
        written[slot] = now;
        states[slot] = state;
    }

    /** Whether {@code slot} (in range) was ever written. */
    boolean isWritten(int slot) {
        return written[slot] != 0;
    }

    /** Records {@code requestId}'s admission now with {@code cachedTokens}; a second one replaces the first. */
    void admit(String requestId, int cachedTokens) {
        admissions.put(requestId, new long[] {stamp, cachedTokens});
    }

    /** The admission {stamp, cachedTokens} of {@code requestId}, or null. */
    long[] admission(String requestId) {
        return admissions.get(requestId);
    }

    /** Forgets the admission of {@code requestId}. */
    void forget(String requestId) {
        admissions.remove(requestId);
    }

    /**
     * Why position {@code p} on {@code slot} cannot be returned as data to a request admitted at {@code admittedAt}
     * with {@code cachedTokens} cached, or null when it can (docs/contract.md, "When a row is data").
     */
    MissingReason verdict(int p, int slot, long admittedAt, long cachedTokens) {
        if (slot < 0 || slot >= slotCapacity) {
            return MissingReason.BAD_SLOT;
        }
        long w = written[slot];
        if (w == 0) {
            return MissingReason.NEVER_WRITTEN;
        }
        if (w <= roundStart) {
            return MissingReason.STALE_ROUND;
        }
        if (p >= cachedTokens && w <= admittedAt) {
            return MissingReason.BEFORE_ADMISSION;
        }
        if (p >= cachedTokens && taken[slot] >= w) {
            return MissingReason.REUSED_SLOT;
        }
        byte state = states[slot];
        return state == ROW ? null : MissingReason.ofCode(state);
    }

    /** Counts a missing row given for {@code reason}. */
    void counted(MissingReason reason) {
        missing[reason.code()]++;
    }

    /** Missing rows verdicts gave with {@code reason}; a plain read, for meters on any thread. */
    long missingRows(MissingReason reason) {
        return missing[reason.code()];
    }

    /** The rows at {@code slots[q]} for positions {@code q >= from} with {@code reasons[q] == 0} were taken by a finish now. */
    void take(int[] slots, byte[] reasons, int from) {
        for (int q = from; q < slots.length; q++) {
            if (reasons[q] == 0) {
                taken[slots[q]] = stamp;
            }
        }
    }

    /** What a move carries of slot {@code slot} (in range): {written, taken, state}. */
    long[] snapshot(int slot) {
        return new long[] {written[slot], taken[slot], states[slot]};
    }

    /** Gives {@code slot} (in range) what {@link #snapshot} took of another slot (all zero: unwritten). */
    void restore(int slot, long[] snapshot) {
        written[slot] = snapshot[0];
        taken[slot] = snapshot[1];
        states[slot] = (byte) snapshot[2];
    }

    /** A new round: every row written so far is stale, no request stays admitted. */
    void newRound() {
        roundStart = stamp;
        admissions.clear();
    }
}
