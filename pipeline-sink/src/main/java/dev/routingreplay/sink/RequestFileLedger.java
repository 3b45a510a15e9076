package dev.routingreplay.sink;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ConcurrentSkipListMap;
import net.openhft.chronicle.queue.RollCycle;

/**
 * Which request files the store holds and the records each held when the writer last checkpointed: one line per file
 * in {@code checkpoint.properties}, {@code requests.file.<cycle>=<name> <first index hex> <last index hex> <first
 * ordinal> <last ordinal>}. The writer adds a record as it commits it (and every record it finds on open); retention
 * retires a file's line (and writes the checkpoint) before it deletes the file, so a file that is absent but still
 * listed was lost, never deleted by retention. A file deleted under a writer keeps its line across reopens, so every
 * later reader sees the loss too.
 *
 * <p>Threading: the sink thread writes; {@link #write} may run on the sink or the closing thread (the map is
 * concurrent). Readers use {@link #read} and {@link #missing} on their own copy.
 */
final class RequestFileLedger {
    private static final String PREFIX = "requests.file.";

    /** One file's records: indexes and ordinals, both inclusive. */
    record Range(String name, long firstIndex, long lastIndex, long firstOrdinal, long lastOrdinal) {
        Range with(long index, long ordinal) {
            return new Range(name, Math.min(firstIndex, index), Math.max(lastIndex, index), Math.min(firstOrdinal, ordinal),
                    Math.max(lastOrdinal, ordinal));
        }

        /** The file and what it held, for a loss message. */
        String describe() {
            return name + " is missing: the records of ordinals " + firstOrdinal + " to " + lastOrdinal + " (indexes "
                    + Long.toHexString(firstIndex) + " to " + Long.toHexString(lastIndex) + ") are lost";
        }
    }

    private final Map<Integer, Range> files = new ConcurrentSkipListMap<>();
    private final RollCycle cycle;

    /** An empty ledger for files of {@code cycle}. */
    RequestFileLedger(RollCycle cycle) {
        this.cycle = cycle;
    }

    /** The ledger in the checkpoint {@code p}; empty for checkpoints written before it. */
    static RequestFileLedger read(Properties p, RollCycle cycle) {
        RequestFileLedger ledger = new RequestFileLedger(cycle);
        for (String key : p.stringPropertyNames()) {
            if (key.startsWith(PREFIX)) {
                String[] f = p.getProperty(key).trim().split(" ");
                ledger.files.put(Integer.parseInt(key.substring(PREFIX.length())), new Range(f[0], Long.parseLong(f[1], 16),
                        Long.parseLong(f[2], 16), Long.parseLong(f[3]), Long.parseLong(f[4])));
            }
        }
        return ledger;
    }

    /** Adds this ledger's lines to the checkpoint {@code p}. */
    void write(Properties p) {
        for (Map.Entry<Integer, Range> e : files.entrySet()) {
            Range r = e.getValue();
            p.setProperty(PREFIX + e.getKey(), r.name + " " + Long.toHexString(r.firstIndex) + " " + Long.toHexString(r.lastIndex) + " "
                    + r.firstOrdinal + " " + r.lastOrdinal);
        }
    }

    /** Adds the record at {@code index} of {@code ordinal} to its file's line. */
    void recorded(long index, long ordinal) {
        int c = cycle.toCycle(index);
        files.compute(c, (k, r) -> r == null ? new Range(fileName(c), index, index, ordinal, ordinal) : r.with(index, ordinal));
    }

    /** Takes a file retention deletes off the ledger: its records are deleted, not lost. */
    void retire(int fileCycle) {
        files.remove(fileCycle);
    }

    /**
     * The files this ledger lists that are absent from {@code queue}, each with the ordinals it held, for those
     * holding records after index {@code after} (-1: all).
     */
    List<String> missing(Path queue, long after) {
        List<String> lost = new ArrayList<>();
        for (Range r : files.values()) {
            if (r.lastIndex > after && !Files.exists(queue.resolve(r.name))) {
                lost.add(r.describe());
            }
        }
        return lost;
    }

    /** Whether a listed file that is absent from {@code queue} held the record at {@code index} (its loss is that file's). */
    boolean missingHolds(Path queue, long index) {
        for (Range r : files.values()) {
            if (r.firstIndex <= index && index <= r.lastIndex && !Files.exists(queue.resolve(r.name))) {
                return true;
            }
        }
        return false;
    }

    /** The name Chronicle gives the file of {@code fileCycle} (epoch 0, UTC). */
    String fileName(int fileCycle) {
        return DateTimeFormatter.ofPattern(cycle.format()).withZone(ZoneOffset.UTC)
                .format(Instant.ofEpochMilli((long) fileCycle * cycle.lengthInMillis())) + ".cq4";
    }
}
