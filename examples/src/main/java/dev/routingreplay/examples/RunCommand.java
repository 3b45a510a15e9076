package dev.routingreplay.examples;

import dev.routingreplay.core.ModelPreset;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.RoutingDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.pipeline.PipelineStats;
import dev.routingreplay.core.sink.SlotStore;
import dev.routingreplay.examples.cli.CommandException;
import dev.routingreplay.examples.cli.ExitStatus;
import dev.routingreplay.examples.cli.MemoryBudget;
import dev.routingreplay.examples.cli.VerboseOption;
import dev.routingreplay.sink.ChronicleRoutingSink;
import dev.routingreplay.sink.StoreConfig;
import dev.routingreplay.sink.StoreManifest;
import dev.routingreplay.sink.StoreUsage;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.TimeUnit;
import net.openhft.chronicle.queue.rollcycles.LegacyRollCycles;
import picocli.CommandLine.Command;
import picocli.CommandLine.ITypeConverter;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;
import picocli.CommandLine.TypeConversionException;

/** {@code r3 run}: the main job. */
@Command(name = "run", mixinStandardHelpOptions = true,
        description = "Run a simulated rollout through the capture pipeline, then check every stored request like a trainer.")
final class RunCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Mixin
    VerboseOption verbose;

    @Option(names = "--model", defaultValue = "qwen3-30b-a3b", converter = ModelConverter.class,
            description = "Model preset: deepseek-v3, kimi-k2, qwen3-30b-a3b, glm-4.5-air, gpt-oss-120b, mixtral-8x7b (default: ${DEFAULT-VALUE}).")
    ModelPreset model;

    @Option(names = "--requests", defaultValue = "1024", description = "Requests to roll out, 1 to 1000000000 (default: ${DEFAULT-VALUE}).")
    int requests;

    @Option(names = "--concurrency", defaultValue = "64", description = "Most live requests, 1 to 4096 (default: ${DEFAULT-VALUE}).")
    int concurrency;

    @Option(names = "--ring-depth", defaultValue = "4", description = "Staging ring slots, 1 to 1024 (default: ${DEFAULT-VALUE}).")
    int ringDepth;

    @Option(names = "--seed", defaultValue = "42", description = "Random seed of the simulated engine (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--backend", defaultValue = "host", description = "Device backend: host (default) or cuda.",
            completionCandidates = BackendNames.class)
    String backend;

    @Option(names = "--out", description = "Store folder (default: r3-data/run-<time>); must not hold a store yet.")
    Path out;

    @Option(names = "--progress-ms", defaultValue = "1000", description = "Progress line interval in ms, 100 to 3600000 (default: ${DEFAULT-VALUE}).")
    long progressMs;

    @Option(names = "--retain-request-gib", description = "Keep at most this many GiB of finished request files, deleting the oldest "
            + "(the store rolls every minute), 0.01 to 1048576 (default: half of the free space when the run starts).")
    Double retainRequestGib;

    private List<String> engineFinished = List.of();
    private long recordsDeleted;

    /** Converts a model preset name; an unknown one is reported naming the option and listing the presets. */
    static final class ModelConverter implements ITypeConverter<ModelPreset> {
        @Override
        public ModelPreset convert(String value) {
            try {
                return ModelPreset.fromName(value);
            } catch (IllegalArgumentException e) {
                throw new TypeConversionException(e.getMessage());
            }
        }
    }

    /** The backend names {@code --backend} accepts. */
    static final class BackendNames extends java.util.ArrayList<String> {
        private static final long serialVersionUID = 1L;

        BackendNames() {
            super(List.of("host", "cuda"));
        }
    }

    /** Most requests of one run ({@link EngineConfig#MAX_REQUESTS}). */
    static final int MAX_REQUESTS = EngineConfig.MAX_REQUESTS;
    /** Most live requests: the simulated KV pool grows with it (about 480 slots a request). */
    static final int MAX_CONCURRENCY = 4096;
    /** Most staging ring slots (what {@code RingSpec} accepts). */
    static final int MAX_RING_DEPTH = 1024;
    /** Shortest progress interval: a line every 100 ms is already more than a terminal can show usefully. */
    static final long MIN_PROGRESS_MS = 100;
    /** Least request-file limit: about ten MiB, a few minutes' files of a small run. */
    static final double MIN_RETAIN_GIB = 0.01;
    /** Most request-file limit: 1 PiB. */
    static final double MAX_RETAIN_GIB = 1 << 20;

    /**
     * The store of a run: files roll every minute, so that retention can delete whole files long before a limit of a
     * few GiB is reached (the soak of issue 13 wrote about 1.6 GB a minute); the request files are limited to
     * {@code --retain-request-gib}, else to the store's default.
     */
    StoreConfig storeConfig(Path dir, RoutingShape shape, int slotCapacity) {
        StoreConfig config = StoreConfig.of(dir, shape, slotCapacity).withRollCycle(LegacyRollCycles.MINUTELY);
        return retainRequestGib == null ? config : config.withMaxRequestBytes((long) (retainRequestGib * (1L << 30)));
    }

    /** Every option's range, checked before anything is opened or created; a bad one is a usage error naming it. */
    private void validate() {
        if (!new BackendNames().contains(backend)) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '--backend': '" + backend + "'; expected host or cuda");
        }
        range("--requests", requests, 1, MAX_REQUESTS);
        range("--concurrency", concurrency, 1, MAX_CONCURRENCY);
        range("--ring-depth", ringDepth, 1, MAX_RING_DEPTH);
        range("--progress-ms", progressMs, MIN_PROGRESS_MS, TimeUnit.HOURS.toMillis(1));
        if (retainRequestGib != null && !(retainRequestGib >= MIN_RETAIN_GIB && retainRequestGib <= MAX_RETAIN_GIB)) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '--retain-request-gib': " + retainRequestGib
                    + " is not in " + MIN_RETAIN_GIB + ".." + (long) MAX_RETAIN_GIB);
        }
        if (out != null && out.toString().isBlank()) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '--out': '" + out + "' is empty; name a folder "
                    + "for the store (or leave --out out for r3-data/run-<time>)");
        }
    }

    private void range(String option, long value, long min, long max) {
        if (value < min || value > max) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '" + option + "': " + value + " is not in "
                    + min + ".." + max);
        }
    }

    /**
     * What the options will allocate, before anything is: the store's slot store ({@code --concurrency} sizes the KV
     * pool, {@code --model} the row), the staging ring ({@code --ring-depth} slots for the engine's largest step, staging
     * and host copies on the host backend; CUDA memory is outside the JVM's limits) and the engine's buffers, checked
     * against the JVM's direct-memory and heap limits. Too much is a usage error naming the options.
     */
    MemoryBudget memoryBudget(EngineConfig config) {
        RoutingShape shape = config.shape();
        int slots = config.slotCapacity();
        int tokens = config.maxTokensPerStep();
        boolean host = backend.equals("host");
        MemoryBudget budget = MemoryBudget.of("--model " + model.cliName() + " --concurrency " + concurrency + " --ring-depth " + ringDepth)
                .direct("slot store " + slots + " slots x " + shape.rowBytes() + " B", MemoryBudget.times(slots, shape.rowBytes()));
        if (host) {
            budget.direct("staging ring " + ringDepth + " slots x 2 copies for " + tokens + " tokens a step",
                    MemoryBudget.ringBytes(shape, tokens, ringDepth, 2));
        }
        long engineBytes = host ? (long) tokens * (shape.idsPerRow() * 4L * 2 + 16) : tokens * 20L;
        return budget.direct("engine buffers for " + tokens + " tokens", engineBytes)
                .heap("slot stamps " + slots + " slots x " + SlotStore.HEAP_BYTES_PER_SLOT + " B", slots * (long) SlotStore.HEAP_BYTES_PER_SLOT)
                .heap("KV blocks " + (config.gpuBlocks() + config.hostBlocks()) + " x 24 B", (config.gpuBlocks() + config.hostBlocks()) * 24L);
    }

    /** Runs and checks; returns 0 when every stored request matched, 1 otherwise; other failures are exceptions. */
    @Override
    public Integer call() {
        validate();
        RoutingShape shape = model.shape();
        EngineConfig config = EngineConfig.defaults(shape, requests, concurrency, seed);
        memoryBudget(config).shortfall(MemoryBudget.Limits.ofThisJvm()).ifPresent(problem -> {
            throw new ParameterException(spec.commandLine(), problem);
        });
        Path dir = out != null ? out : Path.of("r3-data", "run-" + LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")));
        if (Files.exists(dir.resolve(StoreManifest.FILE))) {
            throw new CommandException(ExitStatus.OUTPUT_EXISTS, "--out " + dir + " already holds a store; choose another --out");
        }
        PrintWriter stdout = spec.commandLine().getOut();
        try (RoutingDevice device = openBackend();
                SimulatedEngine engine = new SimulatedEngine(config, device);
                ChronicleRoutingSink sink = ChronicleRoutingSink.open(storeConfig(dir, shape, engine.slotCapacity()))) {
            CapturePipeline pipeline = CapturePipeline.builder().name("run").device(device).sink(sink).ringDepth(ringDepth)
                    .maxTokensPerStep(engine.maxTokensPerStep()).build();
            stdout.printf("r3 run: %s %s on %s, %d requests, concurrency %d, ring depth %d, store %s%n", model.name().toLowerCase(java.util.Locale.ROOT), shape.describe(),
                    device.name(), requests, concurrency, ringDepth, dir);
            long start = System.nanoTime();
            try (ProgressReporter progress = new ProgressReporter(pipeline.metrics(), engine.stats(), ringDepth, requests, stdout,
                    Duration.ofMillis(progressMs))) {
                engine.events().transform(pipeline).blockLast();
            }
            double seconds = (System.nanoTime() - start) / 1e9;
            PipelineStats stats = pipeline.metrics().snapshot();
            stdout.printf("captured: %s in %.1f s (%.0f rows/s, %.1f MB/s)%n", stats.describe(), seconds, stats.rows() / seconds,
                    stats.bytes() / seconds / 1e6);
            stdout.println("engine: " + engine.stats().describe());
            engineFinished = List.copyOf(engine.finishedIds());
            StoreUsage usage = sink.usage();
            recordsDeleted = usage.recordsDeleted();
            if (usage.filesDeleted() > 0) {
                stdout.println("store: " + usage.describe());
            }
        }
        return Trainer.check(dir, engineFinished, recordsDeleted, stdout);
    }

    private RoutingDevice openBackend() {
        try {
            return Backends.open(backend);
        } catch (IllegalArgumentException e) {
            throw new CommandException(ExitStatus.UNAVAILABLE, "--backend " + e.getMessage(), e);
        }
    }
}
