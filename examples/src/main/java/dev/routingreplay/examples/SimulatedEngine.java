package dev.routingreplay.examples;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.memory.DeviceBuffer;
import dev.routingreplay.core.device.RoutingDevice;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAborted;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.event.RoutingBuffer;
import dev.routingreplay.core.event.SlotMappingBuffer;
import dev.routingreplay.core.event.SlotsMoved;
import dev.routingreplay.cuda.CudaBuffer;
import dev.routingreplay.cuda.CudaDevice;
import dev.routingreplay.examples.ExpertRouting.RequestKey;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Supplier;
import reactor.core.publisher.Flux;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * A simulated rollout engine over a paged KV cache that drives the pipeline the way a serving engine does:
 * admission in GRPO prompt groups, chunked prefill, decode with a varying batch, speculative decoding (rejected
 * draft positions keep a wrong routing until a later step overwrites them), preemption and recompute, prefix-cache
 * hits on blocks that earlier samples of the same prompt wrote, swaps of blocks to a host tier and back, aborts,
 * padding tokens, and an end-of-round clear.
 *
 * <p>Each step's routing is written into the engine's device buffers right before its {@link CaptureStep} is
 * emitted, and overwritten by the next step, as a forward pass would: on the host backend through
 * {@link RoutingDevice#write}; on the CUDA backend by the {@code r3_keyed_routing} kernel on the compute stream, from
 * a key and a position per token. Routing comes
 * from {@link ExpertRouting}, so a trainer can check it. Events are generated on demand on the engine's own thread
 * ({@code r3-engine}); {@link #events()} may be subscribed once.
 */
public final class SimulatedEngine implements AutoCloseable {
    private final EngineConfig cfg;
    private final RoutingShape shape;
    private final ForwardPass forwardPass;
    private final Random rng;
    private final int[] refcount;
    private final boolean[] cached;
    private final ArrayDeque<Integer> freeGpu = new ArrayDeque<>();
    private final ArrayDeque<Integer> freeHost = new ArrayDeque<>();
    private final LinkedHashMap<Long, int[]> prefixCache = new LinkedHashMap<>(16, 0.75f, true);
    private final List<Request> live = new ArrayList<>();
    private final ArrayDeque<Supplier<EngineEvent>> pending = new ArrayDeque<>();
    private final List<String> finished = new ArrayList<>();
    private final int requestsPerRound;
    private final EngineStats stats = new EngineStats();
    private int round;
    private int admittedThisRound;
    private long nextPrompt;
    private int nextSample;
    private int promptLength;
    private long nextStepId;
    private boolean complete;

    private enum State { RUNNING, SWAPPED }

    private static final class Request {
        final RequestKey key;
        final String id;
        final int target;
        final List<Integer> blocks = new ArrayList<>();
        int forwarded;
        int prefillEnd;
        State state = State.RUNNING;

        Request(RequestKey key, int outputLength) {
            this.key = key;
            this.id = key.id();
            this.target = key.promptLength() + outputLength - 1;
            this.prefillEnd = key.promptLength();
        }
    }

    /** One token of a step being built. */
    private record Token(Request request, int position, long draftStep) {
    }

    /** An engine on {@code device}; allocates its routing and slot-mapping buffers there. */
    public SimulatedEngine(EngineConfig cfg, RoutingDevice device) {
        this.cfg = cfg;
        this.shape = cfg.shape();
        this.forwardPass = ForwardPass.on(device, shape, cfg.maxTokensPerStep());
        this.rng = new Random(cfg.seed());
        this.refcount = new int[cfg.gpuBlocks()];
        this.cached = new boolean[cfg.gpuBlocks()];
        for (int b = 0; b < cfg.gpuBlocks(); b++) {
            freeGpu.add(b);
        }
        for (int b = 0; b < cfg.hostBlocks(); b++) {
            freeHost.add(cfg.gpuBlocks() + b);
        }
        int groups = (cfg.requests() + cfg.samplesPerPrompt() - 1) / cfg.samplesPerPrompt();
        int groupsPerRound = (groups + cfg.rounds() - 1) / cfg.rounds();
        this.requestsPerRound = groupsPerRound * cfg.samplesPerPrompt();
    }

    /** Largest token count of a step, for sizing the pipeline's ring. */
    public int maxTokensPerStep() {
        return cfg.maxTokensPerStep();
    }

    /** Slots of both tiers, for sizing the store. */
    public int slotCapacity() {
        return cfg.slotCapacity();
    }

    /** The engine's counters (read from any thread). */
    public EngineStats stats() {
        return stats;
    }

    /** Ids of finished requests, in finish order (engine thread, or after the stream completed). */
    public List<String> finishedIds() {
        return finished;
    }

    /** The engine's event stream, generated on demand on the {@code r3-engine} thread. */
    public Flux<EngineEvent> events() {
        // a plain (blocking-allowed) thread: an engine waits on its GPU streams, which a Reactor non-blocking
        // thread must not do
        ExecutorService executor = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "r3-engine");
            t.setDaemon(true);
            return t;
        });
        Scheduler engineThread = Schedulers.fromExecutorService(executor, "r3-engine");
        return Flux.<EngineEvent>generate(sink -> {
            EngineEvent e = next();
            if (e == null) {
                sink.complete();
            } else {
                sink.next(e);
            }
        }).subscribeOn(engineThread).doFinally(signal -> executor.shutdown());
    }

    /** The next event, or null at the end. Capture steps write the device buffers when they are returned. */
    EngineEvent next() {
        while (pending.isEmpty()) {
            if (complete) {
                return null;
            }
            iterate();
        }
        return pending.poll().get();
    }

    private boolean roundAdmitted() {
        return admittedThisRound >= requestsPerRound || totalAdmitted() >= roundedRequests();
    }

    private int roundedRequests() {
        return (cfg.requests() + cfg.samplesPerPrompt() - 1) / cfg.samplesPerPrompt() * cfg.samplesPerPrompt();
    }

    private int totalAdmitted() {
        return round * requestsPerRound + admittedThisRound;
    }

    private void iterate() {
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

    private void admit() {
        while (live.size() < cfg.concurrency() && !roundAdmitted() && freeGpu.size() + prefixCache.size() > 0) {
            if (nextSample == 0) {
                promptLength = cfg.promptMin() + rng.nextInt(cfg.promptMax() - cfg.promptMin() + 1);
            }
            RequestKey key = new RequestKey(nextPrompt, promptLength, nextSample);
            if (++nextSample == cfg.samplesPerPrompt()) {
                nextSample = 0;
                nextPrompt++;
            }
            Request r = new Request(key, cfg.outputMin() + rng.nextInt(cfg.outputMax() - cfg.outputMin() + 1));
            live.add(r);
            admittedThisRound++;
            stats.admitted.incrementAndGet();
            pending.add(() -> new RequestAdmitted(r.id));
            attachPrefix(r);
        }
    }

    private void attachPrefix(Request r) {
        if (!cfg.prefixCaching() || r.forwarded != 0 || !r.blocks.isEmpty()) {
            return;
        }
        int[] prefix = prefixCache.get(r.key.prompt());
        if (prefix == null) {
            return;
        }
        int usable = Math.min(prefix.length, (r.key.promptLength() - 1) / cfg.blockSize());
        for (int i = 0; i < usable; i++) {
            refcount[prefix[i]]++;
            r.blocks.add(prefix[i]);
        }
        r.forwarded = usable * cfg.blockSize();
        stats.prefixHitTokens.addAndGet(r.forwarded);
    }

    private int slotOf(Request r, int position) {
        return r.blocks.get(position / cfg.blockSize()) * cfg.blockSize() + position % cfg.blockSize();
    }

    private boolean ensureBlocks(Request r, int positions) {
        while (r.blocks.size() * cfg.blockSize() < positions) {
            if (freeGpu.isEmpty()) {
                evictPrefix();
            }
            if (freeGpu.isEmpty()) {
                return false;
            }
            int b = freeGpu.poll();
            refcount[b] = 1;
            r.blocks.add(b);
        }
        return true;
    }

    private void evictPrefix() {
        Iterator<Map.Entry<Long, int[]>> it = prefixCache.entrySet().iterator();
        while (it.hasNext() && freeGpu.isEmpty()) {
            int[] blocks = it.next().getValue();
            it.remove();
            for (int b : blocks) {
                cached[b] = false;
                if (refcount[b] == 0) {
                    freeGpu.add(b);
                }
            }
        }
    }

    private void release(Request r) {
        for (int b : r.blocks) {
            if (b >= cfg.gpuBlocks()) {
                freeHost.add(b);
            } else if (--refcount[b] == 0 && !cached[b]) {
                freeGpu.add(b);
            }
        }
        r.blocks.clear();
    }

    private boolean step() {
        int budget = cfg.maxTokensPerStep() - 8;
        List<Token> tokens = new ArrayList<>();
        long stepId = nextStepId;
        for (Request r : live) {
            if (r.state != State.RUNNING || r.forwarded >= r.target) {
                continue;
            }
            attachPrefix(r);
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
            if (n <= 0 || tokens.size() + n > budget || !ensureBlocks(r, r.forwarded + n)) {
                continue;
            }
            for (int i = 0; i < n; i++) {
                tokens.add(new Token(r, r.forwarded + i, i < accepted ? -1 : stepId));
            }
            stats.rejectedDrafts.addAndGet(n - accepted);
            r.forwarded += accepted;
            registerPrefix(r);
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
            slots[t] = tok == null ? -1 : slotOf(tok.request(), tok.position());
        }
        nextStepId++;
        stats.steps.incrementAndGet();
        stats.tokens.addAndGet(tokens.size());
        pending.add(() -> forward(stepId, tokens, slots));
        return true;
    }

    private void registerPrefix(Request r) {
        int full = r.key.promptLength() / cfg.blockSize();
        if (!cfg.prefixCaching() || full == 0 || r.forwarded < full * cfg.blockSize() || prefixCache.containsKey(r.key.prompt())) {
            return;
        }
        int[] blocks = new int[full];
        for (int i = 0; i < full; i++) {
            blocks[i] = r.blocks.get(i);
            cached[blocks[i]] = true;
        }
        prefixCache.put(r.key.prompt(), blocks);
    }

    /** The "forward pass": writes the step's routing and slots into the device buffers, returns the capture event. */
    private CaptureStep forward(long stepId, List<Token> tokens, long[] slots) {
        int n = tokens.size();
        long[] keys = new long[n];
        int[] positions = new int[n];
        for (int t = 0; t < n; t++) {
            Token tok = tokens.get(t);
            keys[t] = tok == null ? 0 : tok.draftStep() >= 0 ? ExpertRouting.draftKey(tok.request().key, tok.draftStep())
                    : ExpertRouting.contentKey(tok.request().key, tok.position());
            positions[t] = tok == null ? -1 : tok.position();
        }
        return forwardPass.forward(stepId, n, keys, positions, slots);
    }

    private void finishDone() {
        Iterator<Request> it = live.iterator();
        while (it.hasNext()) {
            Request r = it.next();
            if (r.state != State.RUNNING || r.forwarded < r.target) {
                continue;
            }
            int[] slots = new int[r.target];
            for (int p = 0; p < r.target; p++) {
                slots[p] = slotOf(r, p);
            }
            String id = r.id;
            pending.add(() -> new RequestFinished(id, slots));
            finished.add(id);
            stats.finished.incrementAndGet();
            release(r);
            it.remove();
        }
    }

    private void swapOut() {
        for (Request r : live) {
            if (r.state == State.RUNNING && !r.blocks.isEmpty() && freeHost.size() >= r.blocks.size()) {
                moveBlocks(r, freeHost);
                r.state = State.SWAPPED;
                stats.swapsOut.incrementAndGet();
                return;
            }
        }
    }

    private void swapIn() {
        for (Request r : live) {
            if (r.state == State.SWAPPED) {
                if (freeGpu.size() < r.blocks.size()) {
                    evictPrefix();
                }
                if (freeGpu.size() >= r.blocks.size()) {
                    moveBlocks(r, freeGpu);
                    r.state = State.RUNNING;
                    stats.swapsIn.incrementAndGet();
                }
                return;
            }
        }
    }

    private void moveBlocks(Request r, ArrayDeque<Integer> into) {
        int bs = cfg.blockSize();
        int n = r.blocks.size() * bs;
        int[] src = new int[n];
        int[] dst = new int[n];
        for (int i = 0; i < r.blocks.size(); i++) {
            int from = r.blocks.get(i);
            int to = into.poll();
            for (int j = 0; j < bs; j++) {
                src[i * bs + j] = from * bs + j;
                dst[i * bs + j] = to * bs + j;
            }
            r.blocks.set(i, to);
            // a block shared with other requests or the prefix cache is copied, not given up: it stays for them
            if (from >= cfg.gpuBlocks()) {
                freeHost.add(from);
            } else if (--refcount[from] == 0 && !cached[from]) {
                freeGpu.add(from);
            }
            if (to < cfg.gpuBlocks()) {
                refcount[to] = 1;
            }
        }
        pending.add(() -> new SlotsMoved(src, dst));
    }

    private void abortOne() {
        if (live.isEmpty()) {
            return;
        }
        Request r = live.remove(rng.nextInt(live.size()));
        release(r);
        stats.aborted.incrementAndGet();
        String id = r.id;
        pending.add(() -> new RequestAborted(id));
    }

    private void preempt(boolean largest) {
        Request victim = null;
        for (Request r : live) {
            if (r.state == State.RUNNING && r.forwarded > 0 && (victim == null || largest && r.blocks.size() > victim.blocks.size())) {
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
        release(victim);
        victim.forwarded = 0;
        stats.preemptions.incrementAndGet();
    }

    private void endRound() {
        for (int[] blocks : prefixCache.values()) {
            for (int b : blocks) {
                cached[b] = false;
                if (refcount[b] == 0) {
                    freeGpu.add(b);
                }
            }
        }
        prefixCache.clear();
        long ended = round++;
        admittedThisRound = 0;
        pending.add(() -> new RoundCleared(ended));
        stats.rounds.incrementAndGet();
        if (totalAdmittedAfterRounds() >= roundedRequests()) {
            complete = true;
        }
    }

    private int totalAdmittedAfterRounds() {
        return round * requestsPerRound;
    }

    /** Frees the engine's device buffers. */
    @Override
    public void close() {
        forwardPass.close();
    }
}
