package dev.routingreplay.examples;

import dev.routingreplay.core.pipeline.PipelineMetrics;
import dev.routingreplay.core.pipeline.PipelineStats;
import java.io.PrintWriter;
import java.time.Duration;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * Prints one progress line per interval while a run goes on: steps, requests, rows/s, ring occupancy, wait time. Lines
 * come from one daemon thread ({@code r3-progress}) that {@link #close} stops: no line is printed and no thread is left
 * once it returns.
 */
final class ProgressReporter implements AutoCloseable {
    /** The name of the thread that prints the lines. */
    static final String THREAD_NAME = "r3-progress";

    private final Scheduler thread;
    private final Disposable ticker;
    private final long start = System.nanoTime();

    /**
     * Starts printing to {@code out} every {@code every} (positive).
     *
     * @throws IllegalArgumentException when {@code every} is not positive
     */
    ProgressReporter(PipelineMetrics metrics, EngineStats engine, int ringDepth, long requests, PrintWriter out, Duration every) {
        if (every.isNegative() || every.isZero()) {
            throw new IllegalArgumentException("progress interval must be positive, was " + every);
        }
        long[] lastRows = {0};
        long[] lastAt = {System.nanoTime()};
        this.thread = Schedulers.newSingle(THREAD_NAME, true);
        this.ticker = Flux.interval(every, every, thread)
                .subscribe(tick -> {
                    PipelineStats s = metrics.snapshot();
                    long now = System.nanoTime();
                    double rate = (s.rows() - lastRows[0]) / ((now - lastAt[0]) / 1e9);
                    lastRows[0] = s.rows();
                    lastAt[0] = now;
                    out.printf("[%5.1fs] steps %d | requests finished %d/%d | %.0f rows/s | ring %d/%d | waited on ring %.1f ms%n",
                            (now - start) / 1e9, s.steps(), s.requestsFinished(), requests, rate, s.ringOccupancy(), ringDepth,
                            s.ringWaitNanos() / 1e6);
                });
    }

    /** Stops the lines and the thread; returns once the thread has ended (or after 5 s, if a line is stuck writing). */
    @Override
    public void close() {
        ticker.dispose();
        thread.disposeGracefully().timeout(Duration.ofSeconds(5)).onErrorComplete().block();
    }
}
