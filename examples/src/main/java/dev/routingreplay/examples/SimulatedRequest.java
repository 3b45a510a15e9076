package dev.routingreplay.examples;

import dev.routingreplay.examples.ExpertRouting.RequestKey;
import java.util.ArrayList;
import java.util.List;

/** A live request of the simulated engine: its block table and how far its forward passes got. Engine thread only. */
final class SimulatedRequest {
    /** Where a request's KV blocks are: on the GPU tier (it may run) or swapped out to the host tier. */
    enum State { RUNNING, SWAPPED }

    final RequestKey key;
    final String id;
    /** Positions to forward: the prompt and every output token but the last (EOS is never forwarded). */
    final int target;
    /** The block table: block i holds positions {@code [i * blockSize, (i + 1) * blockSize)}. */
    final List<Integer> blocks = new ArrayList<>();
    int forwarded;
    int prefillEnd;
    State state = State.RUNNING;
    /**
     * The engine tells the pipeline of this request (ADMITTED, with the prefix it hit) when it is scheduled first, and
     * again when it is scheduled after a preemption; until then the pipeline does not know it.
     */
    boolean admissionDue = true;
    /** Whether an ADMITTED was sent for it (an abort of a request never scheduled sends nothing). */
    boolean announced;

    SimulatedRequest(RequestKey key, int outputLength) {
        this.key = key;
        this.id = key.id();
        this.target = key.promptLength() + outputLength - 1;
        this.prefillEnd = key.promptLength();
    }
}
