package dev.routingreplay.core.testing;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.SlotsMoved;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.function.Supplier;

/**
 * A randomized rollout over a paged KV cache, with its own oracle: chunked prefill, decode, speculative decoding
 * with rejected drafts, preemption and recompute, prefix-cache hits on blocks of finished requests, swaps to a host
 * tier and back, aborts and end-of-round clears. The oracle records, per slot, which (request, position, variant)
 * last wrote it, independently of the store under test; {@link #expected} gives each finished request's routing.
 */
public final class RolloutScenario {
    private final Random rng;
    private final RoutingShape shape;
    private final HostEngine engine;
    private final int blockSize = 8;
    private final int gpuBlocks = 48;
    private final int hostBlocks = 24;
    private final int maxTokensPerStep;
    private final int targetSteps;
    private final ArrayDeque<Integer> freeGpu = new ArrayDeque<>();
    private final ArrayDeque<Integer> freeHost = new ArrayDeque<>();
    /** Full blocks of finished requests, reusable as prefixes; oldest first. */
    private final List<int[]> prefixCache = new ArrayList<>();
    private final Map<String, Request> live = new LinkedHashMap<>();
    private final ArrayDeque<Supplier<EngineEvent>> pending = new ArrayDeque<>();
    private final long[] slotRequest;
    private final int[] slotPosition;
    private final long[] slotVariant;
    private final boolean[] slotWritten;
    private final Map<String, long[][]> expected = new HashMap<>();
    private long nextRequest;
    private long steps;
    private long round;
    private long lastClearAt = -1;
    /** Feature counters, so tests can show every feature happened. */
    public long prefixHits;
    public long swapsOut;
    public long swapsIn;
    public long preemptions;
    public long aborts;
    public long rejectedDrafts;
    public long clears;
    public long paddingTokens;

    private static final class Request {
        final String id;
        final long number;
        final int promptLength;
        final int targetLength;
        final List<Integer> blocks = new ArrayList<>();
        int forwarded;
        boolean swapped;

        Request(String id, long number, int promptLength, int targetLength) {
            this.id = id;
            this.number = number;
            this.promptLength = promptLength;
            this.targetLength = targetLength;
        }
    }

    /** A scenario of at least {@code targetSteps} capture steps. */
    public RolloutScenario(long seed, RoutingShape shape, HostEngine engine, int maxTokensPerStep, int targetSteps) {
        this.rng = new Random(seed);
        this.shape = shape;
        this.engine = engine;
        this.maxTokensPerStep = maxTokensPerStep;
        this.targetSteps = targetSteps;
        for (int b = 0; b < gpuBlocks; b++) {
            freeGpu.add(b);
        }
        for (int b = gpuBlocks; b < gpuBlocks + hostBlocks; b++) {
            freeHost.add(b);
        }
        int slots = slotCapacity();
        slotRequest = new long[slots];
        slotPosition = new int[slots];
        slotVariant = new long[slots];
        slotWritten = new boolean[slots];
    }

    /** Slots of both tiers. */
    public int slotCapacity() {
        return (gpuBlocks + hostBlocks) * blockSize;
    }

    /** Capture steps emitted so far. */
    public long steps() {
        return steps;
    }

    /** Expected routing per finished request: {@code [position][layer * topK + k]}. */
    public Map<String, long[][]> expected() {
        return expected;
    }

    /** The next event, or null when the scenario is over. Capture steps write the engine's buffers when returned. */
    public EngineEvent next() {
        while (pending.isEmpty()) {
            if (steps >= targetSteps && live.isEmpty()) {
                return null;
            }
            planIteration();
        }
        return pending.poll().get();
    }

    private int expertId(long request, int position, long variant, int layer, int k) {
        return Routing.id(request * 1_000_003L + variant, position, layer, k, shape.numExperts());
    }

    private void planIteration() {
        boolean winding = steps >= targetSteps;
        if (!winding && steps > 0 && steps % 3000 == 0 && lastClearAt != steps) {
            endRound();
            lastClearAt = steps;
            return;
        }
        if (!winding && live.size() < 12 && rng.nextInt(3) == 0) {
            admit();
        }
        if (!winding && rng.nextInt(40) == 0) {
            swapOut();
        }
        if (rng.nextInt(10) == 0) {
            swapIn();
        }
        if (!winding && rng.nextInt(150) == 0) {
            abortOne();
        }
        if (!winding && rng.nextInt(120) == 0) {
            preemptOne();
        }
        captureStep();
        finishDone(winding);
    }

    private void admit() {
        long number = nextRequest++;
        String id = "req-" + number;
        int prompt = 1 + rng.nextInt(60);
        Request r = new Request(id, number, prompt, prompt + 1 + rng.nextInt(40));
        if (!prefixCache.isEmpty() && rng.nextInt(3) == 0) {
            int[] prefix = prefixCache.remove(rng.nextInt(prefixCache.size()));
            int usable = Math.min(prefix.length, (prompt - 1) / blockSize);
            for (int i = 0; i < prefix.length; i++) {
                if (i < usable) {
                    r.blocks.add(prefix[i]);
                } else {
                    freeGpu.add(prefix[i]);
                }
            }
            if (usable > 0) {
                prefixHits++;
                r.forwarded = usable * blockSize;
            }
        }
        int cached = r.forwarded; // the prefix-cache hit, declared at admission as an engine reports it
        pending.add(() -> new RequestAdmitted(id, cached));
        live.put(id, r);
    }

    private int slotOf(Request r, int position) {
        return r.blocks.get(position / blockSize) * blockSize + position % blockSize;
    }

    private boolean ensureBlocks(Request r, int positions) {
        while (r.blocks.size() * blockSize < positions) {
            if (freeGpu.isEmpty() && !prefixCache.isEmpty()) {
                for (int b : prefixCache.remove(0)) {
                    freeGpu.add(b);
                }
            }
            if (freeGpu.isEmpty()) {
                return false;
            }
            r.blocks.add(freeGpu.poll());
        }
        return true;
    }

    private void captureStep() {
        List<long[]> tokens = new ArrayList<>();
        for (Request r : live.values()) {
            if (r.swapped || r.forwarded >= r.targetLength || tokens.size() >= maxTokensPerStep - 8) {
                continue;
            }
            int n;
            int accepted;
            if (r.forwarded < r.promptLength) {
                n = Math.min(r.promptLength - r.forwarded, 1 + rng.nextInt(24));
                accepted = n;
            } else if (rng.nextInt(3) == 0) {
                int drafts = 1 + rng.nextInt(3);
                n = drafts + 1;
                accepted = 1 + rng.nextInt(drafts + 1);
            } else {
                n = 1;
                accepted = 1;
            }
            n = Math.min(n, maxTokensPerStep - 4 - tokens.size());
            accepted = Math.min(accepted, n);
            if (n <= 0 || !ensureBlocks(r, r.forwarded + n)) {
                continue;
            }
            for (int i = 0; i < n; i++) {
                int position = r.forwarded + i;
                long variant = i < accepted ? 0 : 1 + steps;
                if (variant != 0) {
                    rejectedDrafts++;
                }
                tokens.add(new long[] {slotOf(r, position), r.number, position, variant});
            }
            r.forwarded += accepted;
        }
        if (tokens.isEmpty()) {
            preemptLargest();
        }
        int padding = rng.nextInt(4);
        for (int i = 0; i < padding; i++) {
            tokens.add(rng.nextInt(tokens.size() + 1), new long[] {-1, 0, 0, 0});
            paddingTokens++;
        }
        long stepId = steps++;
        long[] slotMapping = new long[tokens.size()];
        for (int t = 0; t < tokens.size(); t++) {
            long[] tok = tokens.get(t);
            slotMapping[t] = tok[0];
            if (tok[0] >= 0) {
                int slot = (int) tok[0];
                slotRequest[slot] = tok[1];
                slotPosition[slot] = (int) tok[2];
                slotVariant[slot] = tok[3];
                slotWritten[slot] = true;
            }
        }
        pending.add(() -> engine.step(stepId, slotMapping, (t, l, k) -> {
            long[] tok = tokens.get(t);
            return tok[0] < 0 ? 1_000_000 + t : expertId(tok[1], (int) tok[2], tok[3], l, k);
        }));
    }

    private void finishDone(boolean all) {
        Iterator<Request> it = live.values().iterator();
        while (it.hasNext()) {
            Request r = it.next();
            if (r.swapped || (r.forwarded < r.targetLength && !(all && r.forwarded > 0 && rng.nextInt(4) == 0))) {
                continue;
            }
            int[] slots = new int[r.forwarded];
            long[][] rows = new long[r.forwarded][];
            for (int p = 0; p < r.forwarded; p++) {
                int slot = slotOf(r, p);
                slots[p] = slot;
                if (!slotWritten[slot] || slotPosition[slot] != p || slotVariant[slot] != 0) {
                    throw new IllegalStateException("scenario bug: " + r.id + " position " + p + " slot " + slot);
                }
                rows[p] = new long[shape.idsPerRow()];
                for (int l = 0; l < shape.moeLayers(); l++) {
                    for (int k = 0; k < shape.topK(); k++) {
                        rows[p][l * shape.topK() + k] = expertId(slotRequest[slot], p, 0, l, k);
                    }
                }
            }
            expected.put(r.id, rows);
            String id = r.id;
            pending.add(() -> new RequestFinished(id, slots));
            int full = r.forwarded / blockSize;
            if (full > 0) {
                int[] prefix = new int[full];
                for (int i = 0; i < full; i++) {
                    prefix[i] = r.blocks.get(i);
                }
                prefixCache.add(prefix);
            }
            for (int i = full; i < r.blocks.size(); i++) {
                freeGpu.add(r.blocks.get(i));
            }
            it.remove();
        }
    }

    private void swapOut() {
        for (Request r : live.values()) {
            if (!r.swapped && !r.blocks.isEmpty() && freeHost.size() >= r.blocks.size()) {
                move(r, freeHost, freeGpu);
                r.swapped = true;
                swapsOut++;
                return;
            }
        }
    }

    private void swapIn() {
        for (Request r : live.values()) {
            if (r.swapped) {
                while (freeGpu.size() < r.blocks.size() && !prefixCache.isEmpty()) {
                    for (int b : prefixCache.remove(0)) {
                        freeGpu.add(b);
                    }
                }
                if (freeGpu.size() >= r.blocks.size()) {
                    move(r, freeGpu, freeHost);
                    r.swapped = false;
                    swapsIn++;
                }
                return;
            }
        }
    }

    private void move(Request r, ArrayDeque<Integer> to, ArrayDeque<Integer> releaseTo) {
        int n = r.blocks.size() * blockSize;
        int[] src = new int[n];
        int[] dst = new int[n];
        for (int i = 0; i < r.blocks.size(); i++) {
            int from = r.blocks.get(i);
            int into = to.poll();
            for (int j = 0; j < blockSize; j++) {
                src[i * blockSize + j] = from * blockSize + j;
                dst[i * blockSize + j] = into * blockSize + j;
            }
            r.blocks.set(i, into);
            releaseTo.add(from);
        }
        long[] req = new long[n];
        int[] pos = new int[n];
        long[] var = new long[n];
        boolean[] written = new boolean[n];
        for (int i = 0; i < n; i++) {
            req[i] = slotRequest[src[i]];
            pos[i] = slotPosition[src[i]];
            var[i] = slotVariant[src[i]];
            written[i] = slotWritten[src[i]];
        }
        for (int i = 0; i < n; i++) {
            slotRequest[dst[i]] = req[i];
            slotPosition[dst[i]] = pos[i];
            slotVariant[dst[i]] = var[i];
            slotWritten[dst[i]] = written[i];
        }
        pending.add(() -> new SlotsMoved(src, dst));
    }

    private void abortOne() {
        for (Request r : live.values()) {
            if (!r.swapped) {
                live.remove(r.id);
                freeGpu.addAll(r.blocks);
                aborts++;
                String id = r.id;
                pending.add(() -> new RequestAborted(id));
                return;
            }
        }
    }

    private void preemptOne() {
        for (Request r : live.values()) {
            if (!r.swapped && r.forwarded > 0) {
                freeGpu.addAll(r.blocks);
                r.blocks.clear();
                r.forwarded = 0;
                preemptions++;
                return;
            }
        }
    }

    private void preemptLargest() {
        Request largest = null;
        for (Request r : live.values()) {
            if (!r.swapped && (largest == null || r.blocks.size() > largest.blocks.size())) {
                largest = r;
            }
        }
        if (largest != null && !largest.blocks.isEmpty()) {
            freeGpu.addAll(largest.blocks);
            largest.blocks.clear();
            largest.forwarded = 0;
            preemptions++;
        }
    }

    private void endRound() {
        for (Request r : new ArrayList<>(live.values())) {
            (r.swapped ? freeHost : freeGpu).addAll(r.blocks);
            String id = r.id;
            pending.add(() -> new RequestAborted(id));
            aborts++;
        }
        live.clear();
        for (int[] prefix : prefixCache) {
            for (int b : prefix) {
                freeGpu.add(b);
            }
        }
        prefixCache.clear();
        Arrays.fill(slotWritten, false);
        long r = round++;
        pending.add(() -> new RoundCleared(r));
        clears++;
        long stepId = steps++;
        pending.add(() -> engine.step(stepId, new long[0], (t, l, k) -> 0));
    }
}
