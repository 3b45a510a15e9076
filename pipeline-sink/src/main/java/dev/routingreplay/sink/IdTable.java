package dev.routingreplay.sink;

import java.util.Arrays;

/**
 * Request id hashes to record ordinals, for finding a record by its id among millions: an open-addressing table of
 * {@code long}s (linear probing), one slot per entry holding the upper 32 bits of the id's 64-bit hash as a tag and
 * the ordinal relative to a base; an entry's place depends on its tag alone, so the table can grow and rebase without
 * the ids. At most three quarters full, so 11 to 22 bytes per record (4 MiB for 200,000), and no object per entry.
 *
 * <p>The table never decides alone: equal tags are candidates, and the caller reads the record to compare its id.
 * A repeated id (a request id used again in a later round) has one entry per record; {@link #candidates} returns them
 * newest first. {@link #retainFrom} drops the entries of records retention deleted.
 *
 * <p>Threading: not thread-safe; {@link RequestIndex} guards it.
 */
final class IdTable {
    private static final long EMPTY = 0;
    private static final int MIN_CAPACITY = 1 << 10;
    /** The largest relative ordinal a slot holds (its low 32 bits hold relative ordinal + 1, 0 meaning empty). */
    private static final long MAX_RELATIVE = 0xFFFF_FFFEL;

    private long[] slots = new long[MIN_CAPACITY];
    private int size;
    private long base;

    /** Entries held. */
    int size() {
        return size;
    }

    /** Bytes the table takes. */
    long bytes() {
        return (long) slots.length * Long.BYTES;
    }

    /** Adds the record {@code ordinal} (not below any ordinal added before, less {@link #shift}s) with id hash {@code hash}. */
    void add(long hash, long ordinal) {
        if (size == 0 && slots.length == MIN_CAPACITY) {
            base = ordinal;
        }
        if (ordinal - base > MAX_RELATIVE || ordinal < base) {
            rebase(ordinal);
        }
        if ((size + 1) * 4L > slots.length * 3L) {
            rehash(slots.length * 2, Long.MIN_VALUE);
        }
        reinsert(((long) tag(hash) << 32) | (ordinal - base + 1), base);
        size++;
    }

    /** Adds {@code delta} to every ordinal held (old records whose ordinals were counted, once a stored one is known). */
    void shift(long delta) {
        base += delta;
    }

    /** The ordinals whose id hash may equal {@code hash}, newest (largest) first; the caller compares the ids. */
    long[] candidates(long hash) {
        int mask = slots.length - 1;
        int tag = tag(hash);
        long[] found = new long[4];
        int n = 0;
        for (int i = spread(tag) & mask; slots[i] != EMPTY; i = (i + 1) & mask) {
            if ((int) (slots[i] >>> 32) == tag) {
                if (n == found.length) {
                    found = Arrays.copyOf(found, n * 2);
                }
                found[n++] = base + (slots[i] & 0xFFFF_FFFFL) - 1;
            }
        }
        long[] out = Arrays.copyOf(found, n);
        Arrays.sort(out);
        for (int i = 0, j = n - 1; i < j; i++, j--) {
            long t = out[i];
            out[i] = out[j];
            out[j] = t;
        }
        return out;
    }

    /** Drops the entries of ordinals below {@code firstOrdinal}, and shrinks the table to what is left. */
    void retainFrom(long firstOrdinal) {
        int keep = 0;
        for (long slot : slots) {
            if (slot != EMPTY && base + (slot & 0xFFFF_FFFFL) - 1 >= firstOrdinal) {
                keep++;
            }
        }
        int capacity = MIN_CAPACITY;
        while (capacity < keep * 2L) {
            capacity <<= 1;
        }
        rehash(capacity, firstOrdinal);
    }

    private void rebase(long ordinal) {
        long lowest = Long.MAX_VALUE;
        for (long slot : slots) {
            if (slot != EMPTY) {
                lowest = Math.min(lowest, base + (slot & 0xFFFF_FFFFL) - 1);
            }
        }
        long newBase = Math.min(lowest, ordinal);
        if (ordinal - newBase > MAX_RELATIVE) {
            throw new IllegalStateException("more than 2^32 request records indexed at once (ordinals " + newBase + " to " + ordinal + ")");
        }
        long[] old = slots;
        long oldBase = base;
        slots = new long[old.length];
        base = newBase;
        for (long slot : old) {
            if (slot != EMPTY) {
                reinsert(slot, oldBase);
            }
        }
    }

    private void rehash(int capacity, long firstOrdinal) {
        long[] old = slots;
        slots = new long[capacity];
        size = 0;
        for (long slot : old) {
            if (slot != EMPTY && base + (slot & 0xFFFF_FFFFL) - 1 >= firstOrdinal) {
                reinsert(slot, base);
                size++;
            }
        }
    }

    /** Puts an existing slot (relative to {@code oldBase}) into {@link #slots} (relative to {@link #base}). */
    private void reinsert(long slot, long oldBase) {
        long ordinal = oldBase + (slot & 0xFFFF_FFFFL) - 1;
        int tag = (int) (slot >>> 32);
        int mask = slots.length - 1;
        int i = spread(tag) & mask;
        while (slots[i] != EMPTY) {
            i = (i + 1) & mask;
        }
        slots[i] = ((long) tag << 32) | (ordinal - base + 1);
    }

    private static int tag(long hash) {
        return (int) (hash >>> 32);
    }

    /** The probe start for a tag: a table that only keeps tags must place entries by them alone. */
    private static int spread(int tag) {
        int h = tag * 0x9E3779B9;
        return h ^ (h >>> 16);
    }
}
