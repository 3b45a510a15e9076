package dev.routingreplay.examples;

import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.examples.ExpertRouting.RequestKey;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Random;
import java.util.function.Supplier;

/**
 * The simulated engine's scheduler: each iteration admits requests in GRPO prompt groups (round by round), swaps,
 * aborts and preempts at the configured rates, builds one step's batch (chunked prefill, decode, speculative drafts
 * whose rejected positions keep a wrong routing, padding tokens) and finishes the requests that are done. Blocks come
 * from the {@link KvBlockPool}; a step's routing is written by the {@link ForwardPass} when its event is taken. Events
 * go, in engine order, into a queue the engine drains. Engine thread only.
 */
final class RolloutScheduler {
    private final EngineConfig cfg;
    private final KvBlockPool pool;
    private final ForwardPass forwardPass;
    private final Random rng;
    private final EngineStats stats;
    private final ArrayDeque<Supplier<EngineEvent>> pending;
    private final List<String> finished;
    private final List<SimulatedRequest> live = new ArrayList<>();
    private final int requestsPerRound;
    private int round;
    private int admittedThisRound;
    private long nextPrompt;
    private int nextSample;
    private int promptLength;
    private long nextStepId;
    private boolean complete;

    /** One token of a step being built; {@code draftStep} >= 0 marks a rejected draft position. */
    private record Token(SimulatedRequest request, int position, long draftStep) {
        long key() {
            return draftStep >= 0 ? ExpertRouting.draftKey(request.key, draftStep) : ExpertRouting.contentKey(request.key, position);
        }
    }

    RolloutScheduler(EngineConfig cfg, KvBlockPool pool, ForwardPass forwardPass, Random rng, EngineStats stats,
            ArrayDeque<Supplier<EngineEvent>> pending, List<String> finished, long firstPrompt) {
        this.cfg = cfg;
        this.nextPrompt = firstPrompt;
        this.pool = pool;
        this.forwardPass = forwardPass;
        this.rng = rng;
        this.stats = stats;
        this.pending = pending;
        this.finished = finished;
        int groups = (cfg.requests() + cfg.samplesPerPrompt() - 1) / cfg.samplesPerPrompt();
        int groupsPerRound = (groups + cfg.rounds() - 1) / cfg.rounds();
        this.requestsPerRound = groupsPerRound * cfg.samplesPerPrompt();
    }

    /** Whether every round has ended: no further iteration adds events. */
    boolean complete() {
        return complete;
    }

    /** One engine iteration; adds its events (possibly none) to the queue. */
    void iterate() {
        if (roundAdmitted() && live.isEmpty()) {
            endRound();
            return;
        }
        admit();
        if (cfg.hostBlocks() > 0 && rng.nextDouble() < cfg.swapRate()) {
            swapOut();
        }
        swapIn();
        if (rng.nextDouble() < cfg.abortRate()) {
            abortOne();
        }
        if (rng.nextDouble() < cfg.preemptionRate()) {
            preempt(false);
        }
        boolean progressed = step();
        finishDone();
        if (!progressed && pending.isEmpty() && !live.isEmpty()) {
            preempt(true);
        }
    }

    private boolean roundAdmitted() {
        return admittedThisRound >= requestsPerRound || round * requestsPerRound + admittedThisRound >= roundedRequests();
    }

    private int roundedRequests() {
        return (cfg.requests() + cfg.samplesPerPrompt() - 1) / cfg.samplesPerPrompt() * cfg.samplesPerPrompt();
    }

    private void admit() {
        while (live.size() < cfg.concurrency() && !roundAdmitted() && pool.hasRoomToAdmit()) {
            if (nextSample == 0) {
                promptLength = cfg.promptMin() + rng.nextInt(cfg.promptMax() - cfg.promptMin() + 1);
            }
            RequestKey key = new RequestKey(nextPrompt, promptLength, nextSample);
            if (++nextSample == cfg.samplesPerPrompt()) {
                nextSample = 0;
                nextPrompt++;
            }
            SimulatedRequest r = new SimulatedRequest(key, cfg.outputMin() + rng.nextInt(cfg.outputMax() - cfg.outputMin() + 1));
            live.add(r);
            admittedThisRound++;
            stats.admitted.incrementAndGet();
            stats.prefixHitTokens.addAndGet(pool.attachPrefix(r));
        }
    }

    private boolean step() {
        int budget = cfg.maxTokensPerStep() - 8;
        List<Token> tokens = new ArrayList<>();
        long stepId = nextStepId;
        for (SimulatedRequest r : live) {
            if (r.state != SimulatedRequest.State.RUNNING || r.forwarded >= r.target) {
                continue;
            }
            stats.prefixHitTokens.addAndGet(pool.attachPrefix(r));
            int n;
            int accepted;
            if (r.forwarded < r.prefillEnd) {
                n = Math.min(Math.min(r.prefillEnd - r.forwarded, cfg.prefillChunk()), budget - tokens.size());
                accepted = n;
            } else if (cfg.draftTokens() > 0 && rng.nextBoolean()) {
                n = cfg.draftTokens() + 1;
                accepted = Math.min(1 + rng.nextInt(cfg.draftTokens() + 1), r.target - r.forwarded);
            } else {
                n = 1;
                accepted = 1;
            }
            if (n <= 0 || tokens.size() + n > budget || !pool.ensureBlocks(r, r.forwarded + n)) {
                continue;
            }
            if (r.admissionDue) {
                // as vLLM and SGLang: the request is admitted when first scheduled (its first step), with the prefix-cache hit it got
                r.admissionDue = false;
                r.announced = true;
                String id = r.id;
                int cached = r.forwarded;
                pending.add(() -> new RequestAdmitted(id, cached));
            }
            for (int i = 0; i < n; i++) {
                tokens.add(new Token(r, r.forwarded + i, i < accepted ? -1 : stepId));
            }
            stats.rejectedDrafts.addAndGet(n - accepted);
            r.forwarded += accepted;
            pool.registerPrefix(r);
        }
        if (tokens.isEmpty()) {
            return false;
        }
        int padded = (tokens.size() + 7) / 8 * 8;
        while (tokens.size() < padded) {
            tokens.add(rng.nextInt(tokens.size() + 1), null);
        }
        long[] slots = new long[tokens.size()];
        for (int t = 0; t < slots.length; t++) {
            Token tok = tokens.get(t);
            slots[t] = tok == null ? -1 : pool.slotOf(tok.request(), tok.position());
        }
        nextStepId++;
        stats.steps.incrementAndGet();
        stats.tokens.addAndGet(tokens.size());
        pending.add(() -> forward(stepId, tokens, slots));
        return true;
    }

    /** Runs the step's forward pass when its event is taken: padding (null) has key 0 and position -1. */
    private CaptureStep forward(long stepId, List<Token> tokens, long[] slots) {
        int n = tokens.size();
        long[] keys = new long[n];
        int[] positions = new int[n];
        for (int t = 0; t < n; t++) {
            Token tok = tokens.get(t);
            keys[t] = tok == null ? 0 : tok.key();
            positions[t] = tok == null ? -1 : tok.position();
        }
        return forwardPass.forward(stepId, n, keys, positions, slots);
    }

    private void finishDone() {
        Iterator<SimulatedRequest> it = live.iterator();
        while (it.hasNext()) {
            SimulatedRequest r = it.next();
            if (r.state != SimulatedRequest.State.RUNNING || r.forwarded < r.target) {
                continue;
            }
            int[] slots = new int[r.target];
            for (int p = 0; p < r.target; p++) {
                slots[p] = pool.slotOf(r, p);
            }
            String id = r.id;
            pending.add(() -> new RequestFinished(id, slots));
            finished.add(id);
            stats.finished.incrementAndGet();
            pool.release(r);
            it.remove();
        }
    }

    private void swapOut() {
        for (SimulatedRequest r : live) {
            if (r.state == SimulatedRequest.State.RUNNING && pool.canSwapOut(r)) {
                SlotsMoved moved = pool.swapOut(r);
                pending.add(() -> moved);
                r.state = SimulatedRequest.State.SWAPPED;
                stats.swapsOut.incrementAndGet();
                return;
            }
        }
    }

    private void swapIn() {
        for (SimulatedRequest r : live) {
            if (r.state == SimulatedRequest.State.SWAPPED) {
                SlotsMoved moved = pool.swapIn(r);
                if (moved != null) {
                    pending.add(() -> moved);
                    r.state = SimulatedRequest.State.RUNNING;
                    stats.swapsIn.incrementAndGet();
                }
                return;
            }
        }
    }

    private void abortOne() {
        if (live.isEmpty()) {
            return;
        }
        SimulatedRequest r = live.remove(rng.nextInt(live.size()));
        pool.release(r);
        stats.aborted.incrementAndGet();
        if (r.announced) {
            String id = r.id;
            pending.add(() -> new RequestAborted(id));
        }
    }

    private void preempt(boolean largest) {
        SimulatedRequest victim = null;
        for (SimulatedRequest r : live) {
            if (r.state == SimulatedRequest.State.RUNNING && r.forwarded > 0 && (victim == null || largest && r.blocks.size() > victim.blocks.size())) {
                victim = r;
                if (!largest) {
                    break;
                }
            }
        }
        if (victim == null) {
            return;
        }
        victim.prefillEnd = Math.max(victim.prefillEnd, victim.forwarded);
        pool.release(victim);
        victim.forwarded = 0;
        victim.admissionDue = true; // resumed later: admitted again with the prefix it hits then
        stats.preemptions.incrementAndGet();
    }

    private void endRound() {
        pool.clearPrefixCache();
        long ended = round++;
        admittedThisRound = 0;
        pending.add(() -> new RoundCleared(ended));
        stats.rounds.incrementAndGet();
        if (round * requestsPerRound >= roundedRequests()) {
            complete = true;
        }
    }
}
