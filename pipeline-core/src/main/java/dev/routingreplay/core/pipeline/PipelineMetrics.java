package dev.routingreplay.core.pipeline;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The pipeline's Micrometer meters, tagged {@code pipeline=<name>}:
 * <ul>
 *   <li>{@code r3.ring.wait} (timer): spans during which the pipeline withheld demand from the engine because every
 *       ring slot was in use: how long the engine waited for a ring slot;</li>
 *   <li>{@code r3.ring.occupancy} (gauge): ring slots holding a step not yet flushed;</li>
 *   <li>{@code r3.steps.flushed}, {@code r3.rows.flushed}, {@code r3.bytes.flushed} (counters): what the sink
 *       acknowledged (rows exclude padding);</li>
 *   <li>{@code r3.requests.finished}, {@code r3.requests.aborted} (counters);</li>
 *   <li>{@code r3.requests.faulted} (counter): lifecycle events refused as one request's fault;</li>
 *   <li>{@code r3.ids.invalid}, {@code r3.slots.invalid} (counters): expert ids and slot mapping entries out of range in
 *       captured steps (each drops its token's row).</li>
 * </ul>
 * Updating them allocates nothing.
 */
public final class PipelineMetrics {
    private final Timer ringWait;
    private final AtomicInteger occupancy = new AtomicInteger();
    private final Counter steps;
    private final Counter rows;
    private final Counter bytes;
    private final Counter finished;
    private final Counter aborted;
    private final Counter faulted;
    private final Counter invalidIds;
    private final Counter invalidSlots;

    PipelineMetrics(MeterRegistry registry, String name) {
        this.ringWait = Timer.builder("r3.ring.wait").description("time the engine waited for a free ring slot")
                .tag("pipeline", name).register(registry);
        Gauge.builder("r3.ring.occupancy", occupancy, AtomicInteger::get).description("ring slots in use")
                .tag("pipeline", name).register(registry);
        this.steps = Counter.builder("r3.steps.flushed").tag("pipeline", name).register(registry);
        this.rows = Counter.builder("r3.rows.flushed").tag("pipeline", name).register(registry);
        this.bytes = Counter.builder("r3.bytes.flushed").baseUnit("bytes").tag("pipeline", name).register(registry);
        this.finished = Counter.builder("r3.requests.finished").tag("pipeline", name).register(registry);
        this.aborted = Counter.builder("r3.requests.aborted").tag("pipeline", name).register(registry);
        this.faulted = Counter.builder("r3.requests.faulted").description("lifecycle events refused as one request's fault")
                .tag("pipeline", name).register(registry);
        this.invalidIds = Counter.builder("r3.ids.invalid").description("expert ids out of range in captured steps")
                .tag("pipeline", name).register(registry);
        this.invalidSlots = Counter.builder("r3.slots.invalid").description("slot mapping entries out of range in captured steps")
                .tag("pipeline", name).register(registry);
    }

    void ringWaited(long nanos) {
        ringWait.record(nanos, TimeUnit.NANOSECONDS);
    }

    void slotAcquired() {
        occupancy.incrementAndGet();
    }

    void slotReleased() {
        occupancy.decrementAndGet();
    }

    void flushed(int rowCount, long byteCount) {
        steps.increment();
        rows.increment(rowCount);
        bytes.increment(byteCount);
    }

    void requestFinished() {
        finished.increment();
    }

    void requestAborted() {
        aborted.increment();
    }

    void requestFaulted() {
        faulted.increment();
    }

    void invalid(int ids, int slots) {
        if (ids != 0) {
            invalidIds.increment(ids);
        }
        if (slots != 0) {
            invalidSlots.increment(slots);
        }
    }

    /** Ring slots in use now. */
    public int ringOccupancy() {
        return occupancy.get();
    }

    /** A snapshot of the counters, for summaries and progress lines. */
    public PipelineStats snapshot() {
        return new PipelineStats((long) steps.count(), (long) rows.count(), (long) bytes.count(), (long) finished.count(),
                (long) aborted.count(), occupancy.get(), ringWait.count(), (long) ringWait.totalTime(TimeUnit.NANOSECONDS),
                (long) faulted.count(), (long) invalidIds.count(), (long) invalidSlots.count());
    }
}
