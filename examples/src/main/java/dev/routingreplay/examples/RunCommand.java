package dev.routingreplay.examples;

import dev.routingreplay.core.ModelPreset;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.RoutingDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.pipeline.PipelineStats;
import dev.routingreplay.sink.ChronicleRoutingSink;
import dev.routingreplay.sink.StoreConfig;
import dev.routingreplay.sink.StoreManifest;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code r3 run}: the main job. */
@Command(name = "run", mixinStandardHelpOptions = true,
        description = "Run a simulated rollout through the capture pipeline, then check every stored request like a trainer.")
final class RunCommand implements Callable<Integer> {
    @Option(names = "--model", defaultValue = "qwen3-30b-a3b",
            description = "Model preset: deepseek-v3, kimi-k2, qwen3-30b-a3b, glm-4.5-air, gpt-oss-120b, mixtral-8x7b (default: ${DEFAULT-VALUE}).")
    String model;

    @Option(names = "--requests", defaultValue = "1024", description = "Requests to roll out (default: ${DEFAULT-VALUE}).")
    int requests;

    @Option(names = "--concurrency", defaultValue = "64", description = "Most live requests (default: ${DEFAULT-VALUE}).")
    int concurrency;

    @Option(names = "--ring-depth", defaultValue = "4", description = "Staging ring slots (default: ${DEFAULT-VALUE}).")
    int ringDepth;

    @Option(names = "--seed", defaultValue = "42", description = "Random seed of the simulated engine (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--backend", defaultValue = "host", description = "Device backend: host (default) or cuda.")
    String backend;

    @Option(names = "--out", description = "Store folder (default: r3-data/run-<time>); must not hold a store yet.")
    Path out;

    @Option(names = "--progress-ms", defaultValue = "1000", description = "Progress line interval (default: ${DEFAULT-VALUE}).")
    long progressMs;

    private List<String> engineFinished = List.of();

    @Override
    public Integer call() {
        RoutingShape shape = ModelPreset.fromName(model).shape();
        EngineConfig config = EngineConfig.defaults(shape, requests, concurrency, seed);
        Path dir = out != null ? out : Path.of("r3-data", "run-" + LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")));
        if (Files.exists(dir.resolve(StoreManifest.FILE))) {
            System.err.println("r3 run: " + dir + " already holds a store; choose another --out");
            return 2;
        }
        try (RoutingDevice device = Backends.open(backend);
                SimulatedEngine engine = new SimulatedEngine(config, device);
                ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, shape, engine.slotCapacity()))) {
            CapturePipeline pipeline = CapturePipeline.builder().name("run").device(device).sink(sink).ringDepth(ringDepth)
                    .maxTokensPerStep(engine.maxTokensPerStep()).build();
            System.out.printf("r3 run: %s %s on %s, %d requests, concurrency %d, ring depth %d, store %s%n", model, shape.describe(),
                    device.name(), requests, concurrency, ringDepth, dir);
            long start = System.nanoTime();
            try (ProgressReporter progress = new ProgressReporter(pipeline.metrics(), engine.stats(), ringDepth, requests, System.out,
                    Duration.ofMillis(progressMs))) {
                engine.events().transform(pipeline).blockLast();
            }
            double seconds = (System.nanoTime() - start) / 1e9;
            PipelineStats stats = pipeline.metrics().snapshot();
            System.out.printf("captured: %s in %.1f s (%.0f rows/s, %.1f MB/s)%n", stats.describe(), seconds, stats.rows() / seconds,
                    stats.bytes() / seconds / 1e6);
            System.out.println("engine: " + engine.stats().describe());
            engineFinished = List.copyOf(engine.finishedIds());
        }
        return Trainer.check(dir, engineFinished, System.out);
    }
}
