package dev.routingreplay.examples;

import dev.routingreplay.core.device.RoutingDevice;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
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
 * a key and a position per token. Routing comes from {@link ExpertRouting}, so a trainer can check it. Events are
 * generated on demand on the engine's own thread ({@code r3-engine}); {@link #events()} may be subscribed once.
 *
 * <p>Its parts: {@link KvBlockPool} (blocks, prefix cache, swaps), {@link RolloutScheduler} (admission, batches,
 * preemption, aborts, finishes) and {@link ForwardPass} (the routing, on the host or the GPU).
 */
public final class SimulatedEngine implements AutoCloseable {
    private final EngineConfig cfg;
    private final ForwardPass forwardPass;
    private final RolloutScheduler scheduler;
    private final ArrayDeque<Supplier<EngineEvent>> pending = new ArrayDeque<>();
    private final List<String> finished = new ArrayList<>();
    private final EngineStats stats = new EngineStats();

    /** An engine on {@code device}; allocates its routing and slot-mapping buffers there. */
    public SimulatedEngine(EngineConfig cfg, RoutingDevice device) {
        this(cfg, device, 0);
    }

    /**
     * An engine on {@code device} whose prompts are numbered from {@code firstPrompt} (request ids
     * {@code p<firstPrompt>-...} on), so that engines of several rollout nodes never make the same id.
     *
     * @throws IllegalArgumentException when {@code firstPrompt} is negative
     */
    public SimulatedEngine(EngineConfig cfg, RoutingDevice device, long firstPrompt) {
        if (firstPrompt < 0) {
            throw new IllegalArgumentException("firstPrompt must not be negative, was " + firstPrompt);
        }
        this.cfg = cfg;
        this.forwardPass = ForwardPass.on(device, cfg.shape(), cfg.maxTokensPerStep());
        this.scheduler = new RolloutScheduler(cfg, new KvBlockPool(cfg), forwardPass, new Random(cfg.seed()), stats, pending, finished,
                firstPrompt);
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
            if (scheduler.complete()) {
                return null;
            }
            scheduler.iterate();
        }
        return pending.poll().get();
    }

    /** Frees the engine's device buffers. */
    @Override
    public void close() {
        forwardPass.close();
    }
}
