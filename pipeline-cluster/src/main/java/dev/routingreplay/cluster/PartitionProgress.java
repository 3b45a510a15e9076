package dev.routingreplay.cluster;

import java.util.TreeSet;

/**
 * What a reader owes one assigned partition: the offsets it polled and has not yet finished (handed downstream, or
 * dropped as a duplicate), and so the offset it may commit: the first unfinished one, else one past the last polled.
 * Committing that never skips a record that was not handed downstream. Dropped with the partition when it is revoked
 * (its {@link #generation} tells late fetch results of an earlier assignment apart). One reader thread only.
 */
final class PartitionProgress {
    /** Which assignment of the partition this is (unique within a reader). */
    final long generation;
    private final TreeSet<Long> unfinished = new TreeSet<>();
    private long next;
    private long committed;

    /** Progress of an assignment {@code generation} whose first record to read is at {@code position}. */
    PartitionProgress(long generation, long position) {
        this.generation = generation;
        this.next = position;
        this.committed = position;
    }

    /** A record at {@code offset} was polled. */
    void polled(long offset) {
        unfinished.add(offset);
        next = Math.max(next, offset + 1);
    }

    /** The record at {@code offset} was handed downstream or dropped as a duplicate. */
    void finished(long offset) {
        unfinished.remove(offset);
    }

    /** The offset to commit: every record below it is finished. */
    long commitOffset() {
        return unfinished.isEmpty() ? next : unfinished.first();
    }

    /** Whether {@link #commitOffset()} moved past the last commit. */
    boolean commitDue() {
        return commitOffset() > committed;
    }

    /** Notes that {@code offset} was committed. */
    void committed(long offset) {
        committed = Math.max(committed, offset);
    }
}
