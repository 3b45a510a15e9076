package dev.routingreplay.cuda;

import dev.routingreplay.core.ModelPreset;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.device.StagingRing;
import dev.routingreplay.core.event.CaptureStep;
import java.lang.management.ManagementFactory;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;
import org.HdrHistogram.Histogram;

/**
 * A completion strategy's event-to-subscriber latency (against a thread spinning on {@code cuEventQuery}), its
 * enqueue-to-listener latency, and the process CPU it costs at one capture a millisecond.
 */
final class CompletionLatencyBenchmark {
    private CompletionLatencyBenchmark() {
    }

    /** One table row for {@code strategy}. */
    static void latency(CudaDevice gpu, CompletionStrategy strategy, StringBuilder report) throws Exception {
        RoutingShape shape = ModelPreset.DEEPSEEK_V3.shape();
        int tokens = 64;
        RingSpec spec = new RingSpec(shape, 1, tokens, BenchEngineBuffers.SLOT_CAPACITY);
        BenchEngineBuffers engine = new BenchEngineBuffers(gpu, shape, tokens);
        gpu.launchGate(engine.ids, tokens, shape, 1, 0, engine.scratch);
        gpu.synchronizeCompute();
        CudaStagingRing ring = (CudaStagingRing) gpu.openRing(spec, strategy);
        CaptureStep step = engine.step(1, tokens);
        // 5 significant digits: 0.1 us resolution around the 1 ms offset that keeps signed differences positive
        Histogram histogram = new Histogram(TimeUnit.SECONDS.toNanos(1), 5);
        Histogram endToEnd = new Histogram(TimeUnit.SECONDS.toNanos(1), 5);
        long offset = TimeUnit.MILLISECONDS.toNanos(1);
        // latency: an observer thread spins on the copy-complete event and stamps when it completes; the listener stamps
        // when it is told; the difference is the strategy's event-to-subscriber latency
        int reps = 2000;
        java.util.concurrent.atomic.AtomicLongArray observedAt = new java.util.concurrent.atomic.AtomicLongArray(reps);
        AtomicLong armed = new AtomicLong(-1);
        Thread observer = new Thread(() -> {
            gpu.bind();
            long seen = -1;
            while (seen < reps - 1) {
                long r = armed.get();
                if (r > seen && JCudaDriver.cuEventQuery(ring.copiedEvent(0)) == CUresult.CUDA_SUCCESS) {
                    observedAt.set((int) r, System.nanoTime());
                    seen = r;
                }
                Thread.onSpinWait();
            }
        }, "r3-latency-observer");
        observer.start();
        for (int r = 0; r < reps; r++) {
            long[] notified = {0};
            CountDownLatch told = new CountDownLatch(1);
            long enqueued = System.nanoTime();
            ring.enqueueCapture(0, step, (i, e) -> {
                notified[0] = System.nanoTime();
                told.countDown();
            });
            armed.set(r);
            told.await();
            while (observedAt.get(r) == 0) {
                Thread.onSpinWait();
            }
            if (r >= 100) {
                histogram.recordValue(Math.max(0, offset + notified[0] - observedAt.get(r)));
                endToEnd.recordValue(notified[0] - enqueued);
            }
        }
        observer.join();
        // CPU: paced at one capture a millisecond, no observer
        var os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
        long cpuStart = os.getProcessCpuTime();
        long wallStart = System.nanoTime();
        for (int r = 0; r < 2000; r++) {
            CountDownLatch told = new CountDownLatch(1);
            long next = System.nanoTime() + 1_000_000;
            ring.enqueueCapture(0, step, (i, e) -> told.countDown());
            told.await();
            while (System.nanoTime() < next) {
                LockSupport.parkNanos(next - System.nanoTime());
            }
        }
        double cores = (os.getProcessCpuTime() - cpuStart) / (double) (System.nanoTime() - wallStart);
        BenchReport.line(report, String.format("| %s | %.1f / %.1f / %.1f | %.1f / %.1f / %.1f | %.2f |", strategy,
                endToEnd.getValueAtPercentile(50) / 1e3, endToEnd.getValueAtPercentile(99) / 1e3, endToEnd.getValueAtPercentile(99.9) / 1e3,
                (histogram.getValueAtPercentile(50) - offset) / 1e3, (histogram.getValueAtPercentile(99) - offset) / 1e3,
                (histogram.getValueAtPercentile(99.9) - offset) / 1e3, cores));
        ring.close();
        engine.close();
    }
}
