package dev.routingreplay.core.bench;

import dev.routingreplay.core.ModelPreset;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.pipeline.EngineFeed;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.testing.HostEngine;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.reactivestreams.Subscription;
import reactor.core.publisher.BaseSubscriber;

/**
 * One decode step through the whole pipeline on the host backend, in steady state, with the benchmark thread as
 * the engine thread: it emits a capture step whenever the pipeline has demand (waiting when the ring is full).
 * With {@code -prof gc}, {@code gc.alloc.rate.norm} is the allocation per step (all threads).
 * Run with {@code bench/jmh.sh pipeline-core PipelineStepBenchmark -prof gc}.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
public class PipelineStepBenchmark {
    @Param({"64", "512"})
    public int tokens;

    private HostDevice device;
    private HostEngine engine;
    private MemoryRoutingSink sink;
    private CaptureStep step;
    private final EngineFeed feed = new EngineFeed();
    private BaseSubscriber<EngineEvent> acks;

    @Setup(Level.Trial)
    public void setUp() {
        RoutingShape shape = ModelPreset.QWEN3_30B_A3B.shape();
        device = new HostDevice();
        engine = new HostEngine(device, shape, tokens);
        sink = new MemoryRoutingSink(shape, 64 * 1024);
        long[] slots = new long[tokens];
        for (int t = 0; t < tokens; t++) {
            slots[t] = t * 97L % (64 * 1024);
        }
        step = engine.step(1, slots, (t, l, k) -> (t + l + k) % shape.numExperts());
        CapturePipeline pipeline = CapturePipeline.builder().name("bench").device(device).sink(sink).ringDepth(4)
                .maxTokensPerStep(tokens).build();
        acks = new BaseSubscriber<>() {
            @Override
            protected void hookOnSubscribe(Subscription subscription) {
                subscription.request(Long.MAX_VALUE);
            }
        };
        feed.flux().transform(pipeline).subscribe(acks);
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        feed.complete();
        acks.dispose();
        engine.close();
        sink.close();
    }

    /** Emits one capture step once the pipeline asks for it. */
    @Benchmark
    public long step() {
        return feed.emit(step);
    }
}
