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
 * @param requestFaults lifecycle events refused as one request's fault ({@link dev.routingreplay.core.event.RequestFault})
 * @param invalidIds expert ids outside {@code [0, numExperts)} in captured steps (their rows were dropped)
 * @param invalidSlots slot mapping entries outside {@code [-1, slotCapacity)} in captured steps (their rows were dropped)
 */
public record PipelineStats(long steps, long rows, long bytes, long requestsFinished, long requestsAborted,
        int ringOccupancy, long ringWaits, long ringWaitNanos, long requestFaults, long invalidIds, long invalidSlots) {

    /** One line for logs: {@code steps=.. rows=.. bytes=.. finished=.. aborted=.. ring=.. waited=..ms}, then any faults. */
    public String describe() {
        String line = String.format("steps=%d rows=%d bytes=%d finished=%d aborted=%d ringInUse=%d ringWaits=%d waited=%.1fms",
                steps, rows, bytes, requestsFinished, requestsAborted, ringOccupancy, ringWaits, ringWaitNanos / 1e6);
        if (requestFaults + invalidIds + invalidSlots > 0) {
            line += String.format(" requestFaults=%d invalidIds=%d invalidSlots=%d", requestFaults, invalidIds, invalidSlots);
        }
        return line;
    }
}
