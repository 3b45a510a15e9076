package dev.routingreplay.cuda;

/**
 * How the CUDA backend learns that a capture's device-to-host copy completed (see docs/benchmarks.md for the
 * measured latency and CPU cost of each).
 */
public enum CompletionStrategy {
    /** A dedicated thread polls {@code cuEventQuery} on the oldest in-flight copy, spinning briefly, then yielding, then parking. */
    POLL,
    /** {@code cuLaunchHostFunc} on the copy stream: the driver's callback thread reports each copy. */
    HOST_FUNC,
    /** A dedicated thread blocks in {@code cuEventSynchronize} (events created with blocking sync) on each copy in turn. */
    BLOCKING_SYNC;

    /** The strategy the backend uses unless told otherwise. */
    public static final CompletionStrategy DEFAULT = POLL;
}
