package dev.routingreplay.sink;

import java.util.List;

/**
 * What opening a store recovered from its journal and request queue.
 *
 * @param steps capture steps replayed into the slot index
 * @param rows rows replayed
 * @param moves moves replayed
 * @param clears clears replayed
 * @param round the store's round (clears so far)
 * @param lastStepId id of the last step in the journal, or -1
 * @param requestsThisRound request records of the current round found in the request queue
 * @param records journal excerpts replayed (every kind)
 * @param recordsAfterClear journal excerpts after the last clear (all of them when the journal holds no clear): the
 *     ones that built the slot index
 * @param millis how long recovery took
 * @param losses what the queues lost against the store's last checkpoint ({@link StoreCheckpoint}), one line each
 *     naming the queue, where it now ends and what had been acknowledged; empty when nothing was lost
 */
public record RecoveryReport(long steps, long rows, long moves, long clears, long round, long lastStepId, long requestsThisRound,
        long records, long recordsAfterClear, long millis, List<String> losses) {
    /** Copies {@code losses}. */
    public RecoveryReport {
        losses = List.copyOf(losses);
    }

    /** One line for logs. */
    public String describe() {
        return String.format("recovered %d journal records: %d steps (%d rows), %d moves, %d clears, %d records after the last clear; round %d;"
                + " last step %d; %d request records this round; %d ms", records, steps, rows, moves, clears, recordsAfterClear, round,
                lastStepId, requestsThisRound, millis) + (losses.isEmpty() ? "" : "; LOST: " + String.join("; ", losses));
    }
}
