package dev.routingreplay.core.pipeline;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.device.RoutingDevice;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.sink.RoutingSink;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.ByteOrder;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Function;
import java.util.function.Consumer;
import java.util.function.Supplier;
import org.agrona.concurrent.BackoffIdleStrategy;
import org.agrona.concurrent.IdleStrategy;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.publisher.Operators;

/**
 * The capture pipeline as a Reactor transformation: {@code engineEvents.transform(pipeline)}.
 *
 * <pre>
 * engine events --(engine thread)--> device stage: validate; capture -> ring slot, pack + async copy enqueued
 *               --(r3-sink-NAME thread)--> sink stage: wait for each capture's copy, in order; scatter / gather /
 *                                          move / clear; release the ring slot
 *               --> the same events, each emitted once the sink acknowledged it
 * </pre>
 *
 * <p>Guarantees: effects reach the sink in the engine's order; the copy out of the engine's buffer is enqueued
 * before the engine's {@code onNext} returns; at most {@code ringDepth} captures are in flight and the engine is
 * asked for no more events than the ring can take (backpressure, never buffering, never dropping); the first error
 * (bad input, device, sink) terminates the output with a {@link CapturePipelineException} naming the event; on
 * completion, error or cancellation the ring's memory is freed once no copy and no sink call still uses it.
 *
 * <p>Output: each input event, on the sink thread, once its effects are acknowledged by the sink. Errors from the
 * pipeline itself (bad input, device, sink) are {@link CapturePipelineException}s; an error of the engine's own
 * event stream passes through unchanged, after the events before it were flushed.
 *
 * <p>End of a run: a pipeline may be subscribed once at a time. Its run (sink thread and ring) is released
 * <em>before</em> the output's {@code onComplete} or {@code onError}, so re-subscribing in reaction to the terminal
 * signal ({@code repeat}, {@code retry}, {@code concat}, or after {@code blockLast()}) works, and the sink may be
 * closed then. After a cancellation ({@code dispose()}), the sink thread may still be inside a sink call: wait for
 * {@link #released()} before closing the sink or the device. The sink is never closed by the pipeline.
 */
public final class CapturePipeline implements Function<Flux<EngineEvent>, Flux<EngineEvent>> {
    private final Config config;
    private final AtomicBoolean running = new AtomicBoolean();
    /** The active run, or null. */
    private volatile PipelineRun current;

    private CapturePipeline(Config config) {
        this.config = config;
    }

    /** A builder with defaults: ring depth 4, 8192 tokens per step, a private {@link SimpleMeterRegistry}. */
    public static Builder builder() {
        return new Builder();
    }

    @Override
    public Flux<EngineEvent> apply(Flux<EngineEvent> events) {
        return Flux.using(this::startRun,
                run -> events
                        .hide() // the stages below are not fuseable, whatever the engine's source is
                        .transform(Operators.<EngineEvent, Staged>lift((scannable, actual) -> new DeviceStageSubscriber(actual, run)))
                        .transform(Operators.<Staged, EngineEvent>lift((scannable, actual) -> new SinkStage(actual, run))),
                PipelineRun::close,
                true);
    }

    private PipelineRun startRun() {
        if (!running.compareAndSet(false, true)) {
            throw new IllegalStateException("pipeline '" + config.name() + "' is already running; subscribe it once at a time");
        }
        try {
            PipelineRun run = new PipelineRun(config, () -> {
                current = null;
                running.set(false);
            });
            current = run;
            return run;
        } catch (RuntimeException | Error e) {
            running.set(false);
            throw e;
        }
    }

    /**
     * Completes once the active run, if any, is released: its sink thread has left every sink call and exited, and
     * its ring is freed. Completes at once when no run is active. After it completes, the sink and the device may be
     * closed. It never errors; it completes on the sink thread (or the thread that released the run).
     */
    public Mono<Void> released() {
        return Mono.defer(() -> {
            PipelineRun run = current;
            return run == null ? Mono.empty() : run.whenReleased();
        });
    }

    /** Its configuration (tests in this package build single stages from it). */
    Config config() {
        return config;
    }

    /** The pipeline's meters (counters survive across runs). */
    public PipelineMetrics metrics() {
        return config.metrics();
    }

    /** Whether a run is active (subscribed and not yet cleaned up). */
    public boolean isRunning() {
        return running.get();
    }

    /** Immutable configuration of a pipeline. */
    record Config(String name, RoutingDevice device, RingSpec ringSpec, RoutingSink sink, PipelineMetrics metrics,
            Supplier<IdleStrategy> sinkIdle, Consumer<StepFault> onStepFault) {
    }

    /** The sink thread's default wait: no spinning, parks from 1 us doubling up to 100 ms, woken at once by new work. */
    public static final Supplier<IdleStrategy> DEFAULT_SINK_IDLE = () -> new BackoffIdleStrategy(0, 0,
            TimeUnit.MICROSECONDS.toNanos(1), TimeUnit.MILLISECONDS.toNanos(100));

    /** Builds a {@link CapturePipeline}; every setter validates its argument. */
    public static final class Builder {
        private String name = "default";
        private RoutingDevice device;
        private RoutingShape shape;
        private int ringDepth = 4;
        private int maxTokensPerStep = 8192;
        private Integer slotCapacity;
        private RoutingSink sink;
        private MeterRegistry registry;
        private Supplier<IdleStrategy> sinkIdle = DEFAULT_SINK_IDLE;
        private Consumer<StepFault> onStepFault = fault -> { };

        private Builder() {
        }

        /** Name used in thread names and the {@code pipeline} meter tag. */
        public Builder name(String name) {
            if (name == null || !name.matches("[A-Za-z0-9._-]{1,64}")) {
                throw new IllegalArgumentException("name must be 1-64 of [A-Za-z0-9._-], was '" + name + "'");
            }
            this.name = name;
            return this;
        }

        /** The device the engine's buffers live on (required). */
        public Builder device(RoutingDevice device) {
            this.device = Objects.requireNonNull(device, "device");
            return this;
        }

        /** Routing shape (defaults to the sink's). */
        public Builder shape(RoutingShape shape) {
            this.shape = Objects.requireNonNull(shape, "shape");
            return this;
        }

        /** Ring slots: captures in flight between the engine and the sink; 2 or more lets steps overlap. */
        public Builder ringDepth(int ringDepth) {
            this.ringDepth = ringDepth;
            return this;
        }

        /** Largest token count of one step (a prefill chunk); sizes every ring slot. */
        public Builder maxTokensPerStep(int maxTokensPerStep) {
            this.maxTokensPerStep = maxTokensPerStep;
            return this;
        }

        /** KV-cache slots valid in events (defaults to the sink's capacity). */
        public Builder slotCapacity(int slotCapacity) {
            this.slotCapacity = slotCapacity;
            return this;
        }

        /** Where rows and finished requests go (required). */
        public Builder sink(RoutingSink sink) {
            this.sink = Objects.requireNonNull(sink, "sink");
            return this;
        }

        /**
         * How the sink thread waits for work (default {@link #DEFAULT_SINK_IDLE}): an Agrona idle strategy, made once
         * per run; {@code () -> new BusySpinIdleStrategy()} trades a core for the lowest latency. Work unparks it.
         */
        public Builder sinkIdleStrategy(Supplier<IdleStrategy> idle) {
            this.sinkIdle = Objects.requireNonNull(idle, "idle");
            return this;
        }

        /**
         * Told, on the sink thread, of every step in which the pack found an expert id or a slot mapping entry out of
         * range, after the step took effect (the faults are also counted in the meters). It must return quickly; an
         * exception it throws is ignored. Default: nothing.
         */
        public Builder onStepFault(Consumer<StepFault> listener) {
            this.onStepFault = Objects.requireNonNull(listener, "listener");
            return this;
        }

        /** Registry for the pipeline's meters (default: a private {@link SimpleMeterRegistry}). */
        public Builder meterRegistry(MeterRegistry registry) {
            this.registry = Objects.requireNonNull(registry, "registry");
            return this;
        }

        /**
         * Builds the pipeline.
         *
         * @throws IllegalArgumentException naming the field when the device or sink is missing, the shape differs from
         *     the sink's, or the slot capacity exceeds the sink's
         * @throws IllegalStateException on a big-endian platform (stored rows are little endian)
         */
        public CapturePipeline build() {
            if (ByteOrder.nativeOrder() != ByteOrder.LITTLE_ENDIAN) {
                throw new IllegalStateException("the pipeline needs a little-endian platform, this one is " + ByteOrder.nativeOrder());
            }
            if (device == null) {
                throw new IllegalArgumentException("device is required");
            }
            if (sink == null) {
                throw new IllegalArgumentException("sink is required");
            }
            RoutingShape s = shape == null ? sink.shape() : shape;
            if (!s.equals(sink.shape())) {
                throw new IllegalArgumentException("shape mismatch: pipeline shape " + s.describe() + " but sink shape "
                        + sink.shape().describe());
            }
            int capacity = slotCapacity == null ? sink.slotCapacity() : slotCapacity;
            if (capacity > sink.slotCapacity()) {
                throw new IllegalArgumentException("slotCapacity=" + capacity + " exceeds the sink's slotCapacity=" + sink.slotCapacity());
            }
            RingSpec spec = new RingSpec(s, ringDepth, maxTokensPerStep, capacity);
            PipelineMetrics metrics = new PipelineMetrics(registry == null ? new SimpleMeterRegistry() : registry, name);
            return new CapturePipeline(new Config(name, device, spec, sink, metrics, sinkIdle, onStepFault));
        }
    }
}
