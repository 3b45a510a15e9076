package dev.routingreplay.sink.bench;

import dev.routingreplay.core.ModelPreset;
import dev.routingreplay.core.RoutingShape;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import net.openhft.chronicle.bytes.Bytes;
import net.openhft.chronicle.queue.ExcerptAppender;
import net.openhft.chronicle.queue.ExcerptTailer;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueue;
import net.openhft.chronicle.queue.impl.single.SingleChronicleQueueBuilder;
import net.openhft.chronicle.wire.DocumentContext;
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
 * The layout not taken, measured: a slot index that points into the journal (slot -> excerpt index, token) and a
 * gather that reads each of a 32k-token request's rows from the memory-mapped journal with {@code moveToIndex}.
 * Compare with {@link SinkBenchmark#gatherIndex} (rows copied from an in-memory index). docs/storage.md has both.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
public class JournalGatherBenchmark {
    private static final int STEP_TOKENS = SinkBenchmark.STEP_TOKENS;
    private static final int SLOTS = 64 * 1024;

    @Param({"DEEPSEEK_V3", "QWEN3_30B_A3B"})
    public String preset;

    private Path dir;
    private SingleChronicleQueue queue;
    private ExcerptTailer tailer;
    private long[] excerptIndex;
    private int[] requestSlots;
    private byte[] out;
    private int rowBytes;

    @Setup(Level.Trial)
    public void setUp() throws IOException {
        RoutingShape shape = ModelPreset.valueOf(preset).shape();
        rowBytes = shape.rowBytes();
        dir = Files.createTempDirectory("r3-journal-bench");
        queue = SingleChronicleQueueBuilder.binary(dir).build();
        ExcerptAppender appender = queue.createAppender();
        excerptIndex = new long[SLOTS / STEP_TOKENS];
        byte[] rows = new byte[STEP_TOKENS * rowBytes];
        new Random(1).nextBytes(rows);
        for (int e = 0; e < excerptIndex.length; e++) {
            try (DocumentContext dc = appender.writingDocument()) {
                Bytes<?> b = dc.wire().bytes();
                for (int t = 0; t < STEP_TOKENS; t++) {
                    b.writeInt(e * STEP_TOKENS + t);
                }
                b.write(rows);
            }
            excerptIndex[e] = appender.lastIndexAppended();
        }
        Random rng = new Random(2);
        requestSlots = new int[SinkBenchmark.REQUEST_TOKENS];
        for (int p = 0; p < requestSlots.length; p += SinkBenchmark.BLOCK) {
            int block = rng.nextInt(SLOTS / SinkBenchmark.BLOCK);
            for (int i = 0; i < SinkBenchmark.BLOCK; i++) {
                requestSlots[p + i] = block * SinkBenchmark.BLOCK + i;
            }
        }
        out = new byte[requestSlots.length * rowBytes];
        tailer = queue.createTailer();
    }

    @TearDown(Level.Trial)
    public void tearDown() throws IOException {
        tailer.close();
        queue.close();
        try (Stream<Path> files = Files.walk(dir)) {
            files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    /** Gather of a 32k-token request by reading each row from the journal. */
    @Benchmark
    public byte[] gatherFromJournal() {
        for (int p = 0; p < requestSlots.length; p++) {
            int slot = requestSlots[p];
            tailer.moveToIndex(excerptIndex[slot / STEP_TOKENS]);
            try (DocumentContext dc = tailer.readingDocument()) {
                Bytes<?> b = dc.wire().bytes();
                b.readSkip(4L * STEP_TOKENS + (long) (slot % STEP_TOKENS) * rowBytes);
                b.read(out, p * rowBytes, rowBytes);
            }
        }
        return out;
    }
}
