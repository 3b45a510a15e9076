package dev.routingreplay.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.ModelPreset;
import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.sink.ChronicleRoutingSink;
import dev.routingreplay.sink.StoreConfig;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class SimulatedEngineTest {
    @TempDir
    Path tmp;

    private static EngineConfig small(RoutingShape shape, long seed) {
        return new EngineConfig(shape, 96, 16, 4, 8, 96, 4, 48, 8, 160, 48, 512, 64, 3, true, 0.02, 0.03, 0.01, 2, seed);
    }

    /** Runs the engine through the pipeline into a Chronicle store; returns the engine's stats. */
    private static EngineStats run(EngineConfig config, Path dir, List<String> finished) {
        HostDevice device = new HostDevice();
        try (SimulatedEngine engine = new SimulatedEngine(config, device);
                ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, config.shape(), engine.slotCapacity()))) {
            CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(3)
                    .maxTokensPerStep(engine.maxTokensPerStep()).build();
            engine.events().transform(pipeline).blockLast(Duration.ofSeconds(120));
            finished.addAll(engine.finishedIds());
            assertEquals(finished.size(), pipeline.metrics().snapshot().requestsFinished());
            return engine.stats();
        }
    }

    private static String check(Path dir, List<String> finished, int expectedStatus) {
        java.io.StringWriter text = new java.io.StringWriter();
        int status = Trainer.check(dir, finished, new java.io.PrintWriter(text, true));
        String out = text.toString();
        assertEquals(expectedStatus, status, out);
        return out;
    }

    @ParameterizedTest(name = "drafts={0} prefix={1} preempt={2} swap={3} abort={4}")
    @CsvSource({
        "3, true, 0.02, 0.03, 0.01",
        "0, false, 0, 0, 0",
        "3, false, 0, 0, 0",
        "0, true, 0, 0, 0",
        "0, false, 0.05, 0, 0",
        "0, false, 0, 0.05, 0",
        "0, false, 0, 0, 0.03",
    })
    void everyFeatureKeepsTheReplayedRoutingExact(int drafts, boolean prefix, double preempt, double swap, double abort) {
        EngineConfig config = small(ModelPreset.QWEN3_30B_A3B.shape(), 11).withFeatures(drafts, prefix, preempt, swap, abort);
        List<String> finished = new java.util.ArrayList<>();
        EngineStats stats = run(config, tmp.resolve("store"), finished);
        String out = check(tmp.resolve("store"), finished, 0);
        assertTrue(out.contains("all routing matches"), out);
        assertEquals(drafts > 0, stats.rejectedDrafts.get() > 0, stats.describe());
        assertEquals(prefix, stats.prefixHitTokens.get() > 0, stats.describe());
        if (preempt > 0) {
            assertTrue(stats.preemptions.get() > 0, stats.describe()); // (KV pressure also preempts, whatever the rate)
        }
        assertEquals(swap > 0, stats.swapsOut.get() > 0 && stats.swapsIn.get() == stats.swapsOut.get(), stats.describe());
        assertEquals(abort > 0, stats.aborted.get() > 0, stats.describe());
        assertEquals(2, stats.rounds.get());
        assertEquals(stats.admitted.get(), stats.finished.get() + stats.aborted.get(), stats.describe());
    }

    @Test
    void uint16ModelsRoundTripToo() {
        EngineConfig config = small(ModelPreset.KIMI_K2.shape(), 5);
        List<String> finished = new java.util.ArrayList<>();
        run(config, tmp.resolve("store"), finished);
        check(tmp.resolve("store"), finished, 0);
    }

    @Test
    void aCorruptedRowIsDetected() throws Exception {
        EngineConfig config = small(ModelPreset.MIXTRAL_8X7B.shape(), 3).withFeatures(0, false, 0, 0, 0);
        List<String> finished = new java.util.ArrayList<>();
        Path dir = tmp.resolve("store");
        run(config, dir, finished);
        String victim = finished.get(finished.size() / 2);
        Path file;
        try (Stream<Path> files = Files.list(dir.resolve("requests"))) {
            file = files.filter(p -> p.toString().endsWith(".cq4")).findFirst().orElseThrow();
        }
        byte[] all = Files.readAllBytes(file);
        byte[] id = victim.getBytes(StandardCharsets.UTF_8);
        int at = -1;
        for (int i = 0; i + id.length < all.length && at < 0; i++) {
            if (i >= 4 && all[i - 4] == id.length && java.util.Arrays.equals(all, i, i + id.length, id, 0, id.length)) {
                at = i;
            }
        }
        assertTrue(at > 0, "found the record of " + victim);
        // id, then round (8), seqLen, layers, topK, numExperts (4 each), dtype (1): the first row follows
        int firstId = at + id.length + 8 + 16 + 1;
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.seek(firstId + 5);
            int old = f.read();
            f.seek(firstId + 5);
            f.write((old + 1) % 8);
        }
        // the record's checksum no longer matches: the store reports it, naming its index, and never returns the row
        RuntimeException e = org.junit.jupiter.api.Assertions.assertThrows(RuntimeException.class, () -> check(dir, finished, 1));
        assertTrue(String.valueOf(e.getMessage()).contains("corrupt request record at index"), String.valueOf(e));
    }
}
