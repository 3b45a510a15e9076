package dev.routingreplay.sink;

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
 * @param millis how long recovery took
 */
public record RecoveryReport(long steps, long rows, long moves, long clears, long round, long lastStepId, long requestsThisRound,
        long millis) {
    /** One line for logs. */
    public String describe() {
        return String.format("recovered %d steps (%d rows), %d moves, %d clears; round %d; last step %d; %d request records this round; %d ms",
                steps, rows, moves, clears, round, lastStepId, requestsThisRound, millis);
    }
}
