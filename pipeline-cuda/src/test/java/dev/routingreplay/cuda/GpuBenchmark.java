package dev.routingreplay.cuda;

import dev.routingreplay.core.ModelPreset;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * The GPU benchmark (one run, one card): a decode/prefill loop of the synthetic forward (the gate kernel plus extra
 * work, then the engine's per-step synchronize for sampling) with no capture, with synchronous capture (blocking copy
 * of the int32 routing and a CPU scatter after every step, the old engines' way) and with the async pipeline;
 * the ring's device-to-host bandwidth against a plain pinned {@code cuMemcpyDtoHAsync} of the same bytes; and each
 * completion strategy's event-to-subscriber latency and CPU cost. Writes a markdown report. A tool in the test sources,
 * not part of the backend's API: each section is its own class ({@link StepTimeBenchmark}, {@link CopyBandwidthBenchmark},
 * {@link CompletionLatencyBenchmark}); the bundle carries it (docs/gpu.md).
 *
 * <p>Arguments: {@code [report-file] [forward-ms] [steps] [sections] [latency-rounds]} (defaults: stdout only, 2 ms,
 * 400, {@code steps,bandwidth,latency}, 1); {@code sections} is a comma-separated subset.
 */
public final class GpuBenchmark {
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
            BenchReport.line(report, "# GPU benchmark on " + gpu.name());
            BenchReport.line(report, "");
            BenchReport.line(report, "Forward calibrated to about " + forwardMs + " ms at each size; " + steps + " timed steps per mode, modes interleaved in "
                    + "rounds; mean step time. Ratios are against no capture, measured in the same run.");
            BenchReport.line(report, "");
            if (sections.contains("steps")) {
                BenchReport.line(report, "| model | tokens | no capture (ms/step) | sync capture / none | async pipeline / none |");
                BenchReport.line(report, "|---|---|---|---|---|");
                for (ModelPreset preset : new ModelPreset[] {ModelPreset.DEEPSEEK_V3, ModelPreset.QWEN3_30B_A3B}) {
                    for (int tokens : new int[] {64, 256, 512, 8192}) {
                        StepTimeBenchmark.stepTimes(gpu, preset, tokens, forwardMs, steps, report);
                    }
                }
                BenchReport.line(report, "");
            }
            if (sections.contains("bandwidth")) {
                BenchReport.line(report, "D2H bandwidth at prefill size: the ring's two copies (header+slots, rows) timed with CUDA events on its copy stream, "
                        + "against one plain pinned cuMemcpyDtoHAsync of the same byte count timed the same way; and the whole capture "
                        + "(memset + pack kernel + copies + completion notice) by wall clock, enqueue to listener.");
                BenchReport.line(report, "");
                BenchReport.line(report, "| model | bytes | plain D2H (GB/s) | ring D2H (GB/s) | ring / plain | whole capture, wall (us) | plain copy + sync, wall (us) |");
                BenchReport.line(report, "|---|---|---|---|---|---|---|");
                for (ModelPreset preset : new ModelPreset[] {ModelPreset.DEEPSEEK_V3, ModelPreset.QWEN3_30B_A3B}) {
                    CopyBandwidthBenchmark.bandwidth(gpu, preset.shape(), preset.cliName(), 8192, report);
            }
            BenchReport.line(report, "");
            }
            if (sections.contains("latency")) {
                BenchReport.line(report, "Completion strategies, DeepSeek-V3, 64-token captures on an idle GPU. Enqueue to listener: the whole capture as the "
                        + "subscriber sees it (same GPU work for all, so differences are the notification). Event to listener: listener time minus "
                        + "the time a second thread spinning on cuEventQuery saw the event complete (negative: the strategy saw it first).");
                BenchReport.line(report, "");
                BenchReport.line(report, "| strategy | enqueue to listener p50 / p99 / p99.9 (us) | event to listener p50 / p99 / p99.9 (us) | process CPU at 1 capture/ms (cores) |");
                BenchReport.line(report, "|---|---|---|---|");
                for (int round = 0; round < latencyRounds; round++) {
                    for (CompletionStrategy strategy : CompletionStrategy.values()) {
                        CompletionLatencyBenchmark.latency(gpu, strategy, report);
                    }
            }
            }
        }
        if (reportFile != null) {
            Files.writeString(reportFile, report.toString());
        }
        System.exit(0);
    }
}
