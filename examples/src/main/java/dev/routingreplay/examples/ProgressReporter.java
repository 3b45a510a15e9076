package dev.routingreplay.examples;

import dev.routingreplay.core.pipeline.PipelineMetrics;
import dev.routingreplay.core.pipeline.PipelineStats;
import java.io.PrintWriter;
import java.time.Duration;
import reactor.core.Disposable;
import reactor.core.publisher.Flux;
import reactor.core.scheduler.Schedulers;

/** Prints one progress line per interval while a run goes on: steps, requests, rows/s, ring occupancy, wait time. */
final class ProgressReporter implements AutoCloseable {
    private final Disposable ticker;
    private final long start = System.nanoTime();

    ProgressReporter(PipelineMetrics metrics, EngineStats engine, int ringDepth, long requests, PrintWriter out, Duration every) {
        if (every.isNegative() || every.isZero()) {
            throw new IllegalArgumentException("progress interval must be positive, was " + every);
        }
        long[] lastRows = {0};
        long[] lastAt = {System.nanoTime()};
        this.ticker = Flux.interval(every, every, Schedulers.newSingle("r3-progress"))
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

    @Override
    public void close() {
        ticker.dispose();
    }
}
