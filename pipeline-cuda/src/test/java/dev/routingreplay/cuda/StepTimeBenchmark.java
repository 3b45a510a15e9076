package dev.routingreplay.cuda;

import dev.routingreplay.core.ModelPreset;
import dev.routingreplay.core.RoutingDtype;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.pipeline.EngineFeed;
import dev.routingreplay.core.sink.MemoryRoutingSink;
import dev.routingreplay.core.sink.SlotStore;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import jcuda.Pointer;
import jcuda.driver.JCudaDriver;
import reactor.core.Disposable;

/**
 * Decode/prefill step time of the synthetic forward (the gate kernel plus extra work, then the engine's per-step
 * synchronize for sampling) with no capture, with synchronous capture (blocking copy of the int32 routing and a CPU
 * scatter after every step, the old engines' way) and with the async pipeline; modes interleaved in rounds.
 */
final class StepTimeBenchmark {
    private StepTimeBenchmark() {
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

    /** One table row: mean step time without capture, and the ratios of sync and async capture to it. */
    static void stepTimes(CudaDevice gpu, ModelPreset preset, int tokens, double forwardMs, int steps, StringBuilder report)
            throws InterruptedException {
        RoutingShape shape = preset.shape();
        BenchEngineBuffers engine = new BenchEngineBuffers(gpu, shape, tokens);
        CudaBuffer ids = engine.ids;
        CudaBuffer scratch = engine.scratch;
        int extra = calibrate(gpu, ids, tokens, shape, scratch, forwardMs);
        // sync capture's host side: pageable memory, as a tensor's .cpu() gives
        ByteBuffer pageable = ByteBuffer.allocateDirect(tokens * shape.idsPerRow() * 4).order(ByteOrder.nativeOrder());
        ByteBuffer row = ByteBuffer.allocateDirect(shape.rowBytes()).order(ByteOrder.LITTLE_ENDIAN);
        SlotStore syncStore = new SlotStore(shape, BenchEngineBuffers.SLOT_CAPACITY);
        MemoryRoutingSink sink = new MemoryRoutingSink(shape, BenchEngineBuffers.SLOT_CAPACITY);
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
        BenchReport.line(report, String.format("| %s | %d | %.3f | %.3f | %.4f |", preset.cliName(), tokens, none, sync / none, async / none));
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
            store.put(t % BenchEngineBuffers.SLOT_CAPACITY, row, 0);
        }
    }
}
