package dev.routingreplay.sink.bench;

import dev.routingreplay.core.ElementType;
import dev.routingreplay.core.ModelPreset;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.device.CapturedStep;
import dev.routingreplay.core.device.RingSpec;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.host.HostPack;
import dev.routingreplay.core.sink.SlotStore;
import dev.routingreplay.sink.ChronicleRoutingSink;
import dev.routingreplay.sink.StoreConfig;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;

/**
 * Scatter of a decode step (512 tokens, random slots) and gather of a 32k-token request (a block table of random
 * 16-slot blocks), per model preset: into the in-memory slot index alone, and through the Chronicle sink (journal
 * append + index; request record append). Run with
 * {@code bench/jmh.sh pipeline-sink SinkBenchmark -prof gc}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
public class SinkBenchmark {
    /** Tokens of one decode step. */
    public static final int STEP_TOKENS = 512;
    /** Tokens of the gathered request. */
    public static final int REQUEST_TOKENS = 32 * 1024;
    private static final int SLOTS = 64 * 1024;
    /** KV-cache block size of the gathered request's block table. */
    public static final int BLOCK = 16;

    /**
     * A {@link ModelPreset} name, or {@value #DEEPSEEK_V3_UINT16}: DeepSeek-V3's 58 layers and top 8 with ids of two
     * bytes (928 B a token), as store format 2 kept them (a 257-expert shape stands in: the new format also stores
     * 257 experts as uint16), so the old and the new format run side by side in one invocation.
     */
    @Param({"DEEPSEEK_V3", DEEPSEEK_V3_UINT16, "QWEN3_30B_A3B", "GPT_OSS_120B"})
    public String preset;

    /** The {@link #preset} value of DeepSeek-V3's shape stored as uint16 (the format before uint8 for 256 experts). */
    public static final String DEEPSEEK_V3_UINT16 = "DEEPSEEK_V3_UINT16";

    /** The shape a {@link #preset} value names. */
    public static RoutingShape shapeOf(String preset) {
        if (preset.equals(DEEPSEEK_V3_UINT16)) {
            RoutingShape v3 = ModelPreset.DEEPSEEK_V3.shape();
            return new RoutingShape(v3.moeLayers(), v3.topK(), v3.numExperts() + 1);
        }
        return ModelPreset.valueOf(preset).shape();
    }

    private RoutingShape shape;
    private CapturedStep.Owner stepOwner;
    private CapturedStep step;
    private SlotStore index;
    private ChronicleRoutingSink sink;
    private Path dir;
    private RequestFinished request;
    private ByteBuffer gathered;
    private long[] missingRows;
    private byte[] reasons;
    private ByteBuffer host;
    private int[] stepSlots;
    private long stepId;
    private long finishes;

    @Setup(Level.Trial)
    public void setUp() {
        shape = shapeOf(preset);
        RingSpec spec = new RingSpec(shape, 1, STEP_TOKENS, SLOTS);
        Random rng = new Random(1);
        ByteBuffer ids = ByteBuffer.allocateDirect(STEP_TOKENS * shape.idsPerRow() * 4).order(ByteOrder.nativeOrder());
        for (int i = 0; i < STEP_TOKENS * shape.idsPerRow(); i += shape.topK()) {
            int base = rng.nextInt(shape.numExperts()); // distinct experts in a layer, as a real gate's (every check runs whole)
            for (int k = 0; k < shape.topK(); k++) {
                ids.putInt((i + k) * 4, (base + k) % shape.numExperts());
            }
        }
        ByteBuffer slots = ByteBuffer.allocateDirect(STEP_TOKENS * 4).order(ByteOrder.nativeOrder());
        for (int t = 0; t < STEP_TOKENS; t++) {
            slots.putInt(t * 4, rng.nextInt(SLOTS));
        }
        host = ByteBuffer.allocateDirect(spec.layout().totalBytes()).order(ByteOrder.nativeOrder());
        HostPack.pack(ids, ElementType.INT32, slots, ElementType.INT32, STEP_TOKENS, spec, host);
        stepOwner = CapturedStep.over(spec, host);
        step = stepOwner.view();
        stepOwner.aim(0, STEP_TOKENS);
        stepSlots = new int[STEP_TOKENS];
        for (int t = 0; t < STEP_TOKENS; t++) {
            stepSlots[t] = step.slot(t);
        }
        index = new SlotStore(shape, SLOTS);
        for (int s = 0; s < SLOTS; s++) {
            index.put(s, host, step.rowOffset(s % STEP_TOKENS));
        }
        // a request's slots come from its block table: blocks of 16 consecutive slots, in random places
        int[] requestSlots = new int[REQUEST_TOKENS];
        for (int p = 0; p < REQUEST_TOKENS; p += BLOCK) {
            int block = rng.nextInt(SLOTS / BLOCK);
            for (int i = 0; i < BLOCK; i++) {
                requestSlots[p + i] = block * BLOCK + i;
            }
        }
        request = new RequestFinished("bench", requestSlots);
        gathered = ByteBuffer.allocateDirect(REQUEST_TOKENS * shape.rowBytes());
        missingRows = new long[REQUEST_TOKENS / 64];
        reasons = new byte[REQUEST_TOKENS];
    }

    @Setup(Level.Iteration)
    public void openStore() throws IOException {
        dir = Files.createTempDirectory("r3-bench");
        sink = ChronicleRoutingSink.open(StoreConfig.of(dir, shape, SLOTS).withMinFreeBytes(0));
        // write every slot once (sequential slots), then put the step's random slots back
        for (int base = 0; base < SLOTS; base += STEP_TOKENS) {
            for (int t = 0; t < STEP_TOKENS; t++) {
                host.putInt(step.slotsOffset() + 4 * t, base + t);
            }
            sink.scatter(step);
        }
        for (int t = 0; t < STEP_TOKENS; t++) {
            host.putInt(step.slotsOffset() + 4 * t, stepSlots[t]);
        }
    }

    @TearDown(Level.Iteration)
    public void closeStore() throws IOException {
        sink.close();
        try (Stream<Path> files = Files.walk(dir)) {
            files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    @TearDown(Level.Trial)
    public void tearDown() {
        index.close();
    }

    /** A 512-token step into the in-memory slot index only. */
    @Benchmark
    public int scatterIndex() {
        return index.scatter(step);
    }

    /** A 512-token step through the Chronicle sink: journal excerpt + slot index. */
    @Benchmark
    public int scatterChronicle() {
        stepOwner.aim(stepId++, STEP_TOKENS);
        return sink.scatter(step);
    }

    /** Gather of a 32k-token request from the slot index into a buffer. */
    @Benchmark
    public ByteBuffer gatherIndex() {
        index.gatherInto(request, gathered, missingRows, reasons);
        return gathered;
    }

    /** Finish of a 32k-token request through the Chronicle sink: gather + request record + journal excerpt. */
    @Benchmark
    public long finishChronicle() {
        sink.finish(new RequestFinished("r" + finishes++, request.slots()));
        return finishes;
    }
}
