package dev.routingreplay.core.pipeline;

/**
 * A snapshot of a pipeline's counters.
 *
 * @param steps capture steps the sink acknowledged
 * @param rows rows stored (padding excluded)
 * @param bytes bytes of rows stored
 * @param requestsFinished finished requests gathered
 * @param requestsAborted aborted requests
 * @param ringOccupancy ring slots in use at the snapshot
 * @param ringWaits times the engine had to wait for a free ring slot
 * @param ringWaitNanos total time it waited
 */
public record PipelineStats(long steps, long rows, long bytes, long requestsFinished, long requestsAborted,
        int ringOccupancy, long ringWaits, long ringWaitNanos) {

    /** One line for logs: {@code steps=.. rows=.. bytes=.. finished=.. aborted=.. ring=.. waited=..ms}. */
    public String describe() {
        return String.format("steps=%d rows=%d bytes=%d finished=%d aborted=%d ringInUse=%d ringWaits=%d waited=%.1fms",
                steps, rows, bytes, requestsFinished, requestsAborted, ringOccupancy, ringWaits, ringWaitNanos / 1e6);
    }
}
