package dev.routingreplay.cuda;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.device.StagingRing;
import dev.routingreplay.core.event.CaptureStep;
import java.util.concurrent.CountDownLatch;
import jcuda.Pointer;
import jcuda.driver.JCudaDriver;

/**
 * The ring's device-to-host bandwidth at prefill size (its two copies timed with CUDA events on its copy stream)
 * against one plain pinned {@code cuMemcpyDtoHAsync} of the same bytes, and the whole capture by wall clock.
 */
final class CopyBandwidthBenchmark {
    private CopyBandwidthBenchmark() {
    }

    /** One table row for {@code shape} at {@code tokens} tokens. */
    static void bandwidth(CudaDevice gpu, RoutingShape shape, String name, int tokens, StringBuilder report) throws Exception {
        RingSpec spec = new RingSpec(shape, 1, tokens, BenchEngineBuffers.SLOT_CAPACITY);
        long bytes = spec.layout().headerBytes(tokens) + (long) spec.layout().rowBytesFor(tokens);
        BenchEngineBuffers engine = new BenchEngineBuffers(gpu, shape, tokens);
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
        BenchReport.line(report, String.format("| %s | %d | %.1f | %.1f | %.3f | %.0f | %.0f |", name, bytes, plainGbs, ringGbs, ringGbs / plainGbs,
                ringWall / 1e3 / n, plainWall / 1e3 / n));
        JCudaDriver.cuEventDestroy(start);
        JCudaDriver.cuEventDestroy(end);
        ring.close();
        JCudaDriver.cuMemFreeHost(pinned);
        plainSrc.close();
        engine.close();
    }
}
