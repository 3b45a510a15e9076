package dev.routingreplay.cuda;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.ModelPreset;
import dev.routingreplay.core.RoutingDtype;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.device.StagingRing;
import dev.routingreplay.core.event.CaptureStep;
import dev.routingreplay.core.event.RoutingBuffer;
import dev.routingreplay.core.event.SlotMappingBuffer;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.pipeline.EngineFeed;
import dev.routingreplay.core.sink.SlotStore;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import jcuda.Pointer;
import jcuda.driver.CUresult;
import jcuda.driver.JCudaDriver;
import org.HdrHistogram.Histogram;
import reactor.core.Disposable;

/**
 * The GPU benchmark (one run, one card): a decode/prefill loop of the synthetic forward (the gate kernel plus extra
 * work, then the engine's per-step synchronize for sampling) with no capture, with synchronous capture (blocking copy
 * of the int32 routing and a CPU scatter after every step, the old engines' way) and with the async pipeline;
 * the ring's device-to-host bandwidth against a plain pinned {@code cuMemcpyDtoHAsync} of the same bytes; and each
 * completion strategy's event-to-subscriber latency and CPU cost. Writes a markdown report.
 *
 * <p>Arguments: {@code [report-file] [forward-ms] [steps] [sections] [latency-rounds]} (defaults: stdout only, 2 ms,
 * 400, {@code steps,bandwidth,latency}, 1); {@code sections} is a comma-separated subset.
 */
public final class GpuBenchmark {
    private static final int SLOT_CAPACITY = 16384;

    private GpuBenchmark() {
    }

    /** Runs the benchmark. */
    public static void main(String[] args) throws Exception {
        Path reportFile = args.length > 0 ? Path.of(args[0]) : null;
        double forwardMs = args.length > 1 ? Double.parseDouble(args[1]) : 2.0;
        int steps = args.length > 2 ? Integer.parseInt(args[2]) : 400;
        String sections = args.length > 3 ? args[3] : "steps,bandwidth,latency";
        int latencyRounds = args.length > 4 ? Integer.parseInt(args[4]) : 1;
        StringBuilder report = new StringBuilder();
        String unavailable = Cuda.unavailableReason();
        if (unavailable != null) {
            System.err.println("GPU benchmark: " + unavailable);
            System.exit(2);
        }
        try (CudaDevice gpu = CudaDevice.open(0, CompletionStrategy.DEFAULT)) {
            line(report, "# GPU benchmark on " + gpu.name());
            line(report, "");
            line(report, "Forward calibrated to about " + forwardMs + " ms at each size; " + steps + " timed steps per mode, modes interleaved in "
                    + "rounds; mean step time. Ratios are against no capture, measured in the same run.");
            line(report, "");
            if (sections.contains("steps")) {
                line(report, "| model | tokens | no capture (ms/step) | sync capture / none | async pipeline / none |");
                line(report, "|---|---|---|---|---|");
                for (ModelPreset preset : new ModelPreset[] {ModelPreset.DEEPSEEK_V3, ModelPreset.QWEN3_30B_A3B}) {
                    for (int tokens : new int[] {64, 256, 512, 8192}) {
                        stepTimes(gpu, preset, tokens, forwardMs, steps, report);
                    }
                }
                line(report, "");
            }
            if (sections.contains("bandwidth")) {
            line(report, "D2H bandwidth at prefill size: the ring's two copies (header+slots, rows) timed with CUDA events on its copy stream, "
                    + "against one plain pinned cuMemcpyDtoHAsync of the same byte count timed the same way; and the whole capture "
                    + "(memset + pack kernel + copies + completion notice) by wall clock, enqueue to listener.");
            line(report, "");
            line(report, "| model | bytes | plain D2H (GB/s) | ring D2H (GB/s) | ring / plain | whole capture, wall (us) | plain copy + sync, wall (us) |");
            line(report, "|---|---|---|---|---|---|---|");
            for (ModelPreset preset : new ModelPreset[] {ModelPreset.DEEPSEEK_V3, ModelPreset.QWEN3_30B_A3B}) {
                bandwidth(gpu, preset.shape(), preset.cliName(), 8192, report);
            }
            line(report, "");
            }
            if (sections.contains("latency")) {
            line(report, "Completion strategies, DeepSeek-V3, 64-token captures on an idle GPU. Enqueue to listener: the whole capture as the "
                    + "subscriber sees it (same GPU work for all, so differences are the notification). Event to listener: listener time minus "
                    + "the time a second thread spinning on cuEventQuery saw the event complete (negative: the strategy saw it first).");
            line(report, "");
            line(report, "| strategy | enqueue to listener p50 / p99 / p99.9 (us) | event to listener p50 / p99 / p99.9 (us) | process CPU at 1 capture/ms (cores) |");
            line(report, "|---|---|---|---|");
            for (int round = 0; round < latencyRounds; round++) {
                for (CompletionStrategy strategy : CompletionStrategy.values()) {
                    latency(gpu, strategy, report);
                }
            }
            }
        }
        if (reportFile != null) {
            Files.writeString(reportFile, report.toString());
        }
        System.exit(0);
    }

    private static void line(StringBuilder report, String text) {
        report.append(text).append('\n');
        System.out.println(text);
    }

    /** The engine's side of a benchmark: routing ids, a slot mapping (token t -> slot t), gate scratch. */
    private static final class EngineBuffers implements AutoCloseable {
        final CudaBuffer ids;
        final CudaBuffer slots;
        final CudaBuffer scratch;
        final RoutingBuffer routing;
        final SlotMappingBuffer slotMapping;

        EngineBuffers(CudaDevice gpu, RoutingShape shape, int tokens) {
            ids = gpu.allocate((long) tokens * shape.idsPerRow() * 4);
            slots = gpu.allocate(tokens * 8L);
            scratch = gpu.allocate(64);
            ByteBuffer mapping = ByteBuffer.allocateDirect(tokens * 8).order(ByteOrder.nativeOrder());
            for (int t = 0; t < tokens; t++) {
                mapping.putLong(t * 8, t % SLOT_CAPACITY);
            }
            gpu.write(slots, 0, mapping);
            routing = new RoutingBuffer(ids, ElementType.INT32, shape.moeLayers(), shape.topK());
            slotMapping = new SlotMappingBuffer(slots, ElementType.INT64);
        }

        CaptureStep step(long stepId, int tokens) {
            return new CaptureStep(stepId, tokens, routing, slotMapping);
        }

        @Override
        public void close() {
            ids.close();
            slots.close();
            scratch.close();
        }
    }

    private static int calibrate(CudaDevice gpu, CudaBuffer ids, int tokens, RoutingShape shape, CudaBuffer scratch, double forwardMs) {
        double base = timeForward(gpu, ids, tokens, shape, 0, scratch);
        double probe = timeForward(gpu, ids, tokens, shape, 20000, scratch);
        double perUnit = Math.max(1e-9, (probe - base) / 20000);
        int extra = (int) Math.max(0, Math.min(5_000_000, (forwardMs - base) / perUnit));
        return extra;
    }

    private static double timeForward(CudaDevice gpu, CudaBuffer ids, int tokens, RoutingShape shape, int extra, CudaBuffer scratch) {
        for (int i = 0; i < 3; i++) {
            gpu.launchGate(ids, tokens, shape, i, extra, scratch);
        }
        gpu.synchronizeCompute();
        long start = System.nanoTime();
        for (int i = 0; i < 10; i++) {
            gpu.launchGate(ids, tokens, shape, i, extra, scratch);
            gpu.synchronizeCompute();
        }
        return (System.nanoTime() - start) / 1e6 / 10;
    }

    private static void stepTimes(CudaDevice gpu, ModelPreset preset, int tokens, double forwardMs, int steps, StringBuilder report)
            throws InterruptedException {
        RoutingShape shape = preset.shape();
        EngineBuffers engine = new EngineBuffers(gpu, shape, tokens);
        CudaBuffer ids = engine.ids;
        CudaBuffer scratch = engine.scratch;
        int extra = calibrate(gpu, ids, tokens, shape, scratch, forwardMs);
        // sync capture's host side: pageable memory, as a tensor's .cpu() gives
        ByteBuffer pageable = ByteBuffer.allocateDirect(tokens * shape.idsPerRow() * 4).order(ByteOrder.nativeOrder());
        ByteBuffer row = ByteBuffer.allocateDirect(shape.rowBytes()).order(ByteOrder.LITTLE_ENDIAN);
        SlotStore syncStore = new SlotStore(shape, SLOT_CAPACITY);
        MemoryRoutingSink sink = new MemoryRoutingSink(shape, SLOT_CAPACITY);
        CapturePipeline pipeline = CapturePipeline.builder().name("gpu-bench").device(gpu).sink(sink).ringDepth(4).maxTokensPerStep(tokens).build();
        EngineFeed feed = new EngineFeed();
        CountDownLatch done = new CountDownLatch(1);
        Disposable running = feed.flux().transform(pipeline).doFinally(s -> done.countDown()).subscribe();
        long[] total = new long[3];
        int rounds = 5;
        int perRound = Math.max(1, steps / rounds);
        long stepId = 0;
        for (int round = -1; round < rounds; round++) {
            for (int mode = 0; mode < 3; mode++) {
                long start = System.nanoTime();
                for (int i = 0; i < perRound; i++) {
                    gpu.launchGate(ids, tokens, shape, stepId, extra, scratch);
                    if (mode == 1) {
                        gpu.synchronizeCompute();
                        syncCapture(gpu, ids, pageable, row, shape, tokens, syncStore);
                    } else if (mode == 2) {
                        feed.emit(engine.step(stepId, tokens));
                        gpu.synchronizeCompute();
                    } else {
                        gpu.synchronizeCompute();
                    }
                    stepId++;
                }
                if (round >= 0) {
                    total[mode] += System.nanoTime() - start;
                }
            }
        }
        feed.complete();
        done.await(60, TimeUnit.SECONDS);
        running.dispose();
        double none = total[0] / 1e6 / (rounds * perRound);
        double sync = total[1] / 1e6 / (rounds * perRound);
        double async = total[2] / 1e6 / (rounds * perRound);
        line(report, String.format("| %s | %d | %.3f | %.3f | %.4f |", preset.cliName(), tokens, none, sync / none, async / none));
        syncStore.close();
        sink.close();
        engine.close();
    }

    private static void syncCapture(CudaDevice gpu, CudaBuffer ids, ByteBuffer pageable, ByteBuffer row, RoutingShape shape, int tokens,
            SlotStore store) {
        int bytes = tokens * shape.idsPerRow() * 4;
        gpu.bind();
        Cuda.check(JCudaDriver.cuMemcpyDtoH(Pointer.to(pageable), ids.pointer(), bytes), "cuMemcpyDtoH");
        RoutingDtype dtype = shape.dtype();
        int perRow = shape.idsPerRow();
        for (int t = 0; t < tokens; t++) {
            for (int j = 0; j < perRow; j++) {
                dtype.write(row, j * dtype.bytes(), pageable.getInt((t * perRow + j) * 4));
            }
            store.put(t % SLOT_CAPACITY, row, 0);
        }
    }

    private static void bandwidth(CudaDevice gpu, RoutingShape shape, String name, int tokens, StringBuilder report) throws Exception {
        RingSpec spec = new RingSpec(shape, 1, tokens, SLOT_CAPACITY);
        long bytes = spec.layout().headerBytes(tokens) + (long) spec.layout().rowBytesFor(tokens);
        EngineBuffers engine = new EngineBuffers(gpu, shape, tokens);
        gpu.launchGate(engine.ids, tokens, shape, 1, 0, engine.scratch);
        gpu.synchronizeCompute();
        CudaBuffer plainSrc = gpu.allocate(bytes);
        Pointer pinned = new Pointer();
        gpu.bind();
        Cuda.check(JCudaDriver.cuMemHostAlloc(pinned, bytes, 0), "cuMemHostAlloc");
        CudaStagingRing ring = (CudaStagingRing) gpu.openRing(spec);
        ring.timeCopies();
        CaptureStep step = engine.step(1, tokens);
        jcuda.driver.CUevent start = new jcuda.driver.CUevent();
        jcuda.driver.CUevent end = new jcuda.driver.CUevent();
        Cuda.check(JCudaDriver.cuEventCreate(start, 0), "cuEventCreate");
        Cuda.check(JCudaDriver.cuEventCreate(end, 0), "cuEventCreate");
        int reps = 60;
        double plainMs = 0;
        double ringMs = 0;
        long plainWall = 0;
        long ringWall = 0;
        float[] ms = new float[1];
        for (int r = 0; r < reps; r++) {
            long t0 = System.nanoTime();
            Cuda.check(JCudaDriver.cuEventRecord(start, gpu.computeStream()), "cuEventRecord");
            Cuda.check(JCudaDriver.cuMemcpyDtoHAsync(pinned, plainSrc.pointer(), bytes, gpu.computeStream()), "cuMemcpyDtoHAsync(plain)");
            Cuda.check(JCudaDriver.cuEventRecord(end, gpu.computeStream()), "cuEventRecord");
            gpu.synchronizeCompute();
            long t1 = System.nanoTime();
            Cuda.check(JCudaDriver.cuEventElapsedTime(ms, start, end), "cuEventElapsedTime");
            double plainCopy = ms[0];
            CountDownLatch copied = new CountDownLatch(1);
            long t2 = System.nanoTime();
            ring.enqueueCapture(0, step, (i, e) -> copied.countDown());
            copied.await();
            long t3 = System.nanoTime();
            double ringCopy = ring.lastCopyMillis();
            if (r >= 10) {
                plainMs += plainCopy;
                ringMs += ringCopy;
                plainWall += t1 - t0;
                ringWall += t3 - t2;
            }
        }
        int n = reps - 10;
        double plainGbs = bytes * n / (plainMs * 1e6);
        double ringGbs = bytes * n / (ringMs * 1e6);
        line(report, String.format("| %s | %d | %.1f | %.1f | %.3f | %.0f | %.0f |", name, bytes, plainGbs, ringGbs, ringGbs / plainGbs,
                ringWall / 1e3 / n, plainWall / 1e3 / n));
        JCudaDriver.cuEventDestroy(start);
        JCudaDriver.cuEventDestroy(end);
        ring.close();
        JCudaDriver.cuMemFreeHost(pinned);
        plainSrc.close();
        engine.close();
    }

    private static void latency(CudaDevice gpu, CompletionStrategy strategy, StringBuilder report) throws Exception {
        RoutingShape shape = ModelPreset.DEEPSEEK_V3.shape();
        int tokens = 64;
        RingSpec spec = new RingSpec(shape, 1, tokens, SLOT_CAPACITY);
        EngineBuffers engine = new EngineBuffers(gpu, shape, tokens);
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
        line(report, String.format("| %s | %.1f / %.1f / %.1f | %.1f / %.1f / %.1f | %.2f |", strategy,
                endToEnd.getValueAtPercentile(50) / 1e3, endToEnd.getValueAtPercentile(99) / 1e3, endToEnd.getValueAtPercentile(99.9) / 1e3,
                (histogram.getValueAtPercentile(50) - offset) / 1e3, (histogram.getValueAtPercentile(99) - offset) / 1e3,
                (histogram.getValueAtPercentile(99.9) - offset) / 1e3, cores));
        ring.close();
        engine.close();
    }

}
