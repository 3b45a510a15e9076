package dev.routingreplay.cuda;

import jcuda.driver.CUevent_flags;

/**
 * How the CUDA backend learns that a capture's device-to-host copy completed (see docs/benchmarks.md for the
 * measured latency and CPU cost of each). Both report a CUDA error (also a sticky one) to the capture's listener.
 * {@code cuLaunchHostFunc} callbacks were measured too and dropped: millisecond tails, and the driver never calls
 * them once the context has failed, so the sink would wait forever.
 */
public enum CompletionStrategy {
    /** A dedicated thread polls {@code cuEventQuery} on the oldest in-flight copy, spinning briefly, then yielding, then parking. */
    POLL,
    /** A dedicated thread blocks in {@code cuEventSynchronize} (events created with blocking sync) on each copy in turn. */
    BLOCKING_SYNC;

    /** The strategy the backend uses unless told otherwise. */
    public static final CompletionStrategy DEFAULT = POLL;

    /** Flags of a ring's copy-complete events under this strategy: timing disabled, blocking sync for {@link #BLOCKING_SYNC}. */
    int copiedEventFlags() {
        return CUevent_flags.CU_EVENT_DISABLE_TIMING | (this == BLOCKING_SYNC ? CUevent_flags.CU_EVENT_BLOCKING_SYNC : 0);
    }
}
