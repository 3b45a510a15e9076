package dev.routingreplay.examples;

import java.util.concurrent.atomic.AtomicLong;

/** Counters of the simulated engine, readable from any thread while it runs. */
public final class EngineStats {
    /** Capture steps emitted. */
    public final AtomicLong steps = new AtomicLong();
    /** Tokens forwarded, padding and rejected drafts included. */
    public final AtomicLong tokens = new AtomicLong();
    /** Requests admitted. */
    public final AtomicLong admitted = new AtomicLong();
    /** Requests finished. */
    public final AtomicLong finished = new AtomicLong();
    /** Requests aborted. */
    public final AtomicLong aborted = new AtomicLong();
    /** Prompt tokens served from the prefix cache. */
    public final AtomicLong prefixHitTokens = new AtomicLong();
    /** Draft tokens forwarded and rejected. */
    public final AtomicLong rejectedDrafts = new AtomicLong();
    /** Preemptions (each recomputed later). */
    public final AtomicLong preemptions = new AtomicLong();
    /** Swaps to the host tier. */
    public final AtomicLong swapsOut = new AtomicLong();
    /** Swaps back to the GPU tier. */
    public final AtomicLong swapsIn = new AtomicLong();
    /** Rounds ended with a clear. */
    public final AtomicLong rounds = new AtomicLong();

    /** One line: features exercised. */
    public String describe() {
        return String.format("steps=%d tokens=%d admitted=%d finished=%d aborted=%d prefixHitTokens=%d rejectedDrafts=%d "
                        + "preemptions=%d swaps=%d/%d rounds=%d", steps.get(), tokens.get(), admitted.get(), finished.get(),
                aborted.get(), prefixHitTokens.get(), rejectedDrafts.get(), preemptions.get(), swapsOut.get(), swapsIn.get(),
                rounds.get());
    }
}
