package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.event.EngineEvent;
import dev.routingreplay.core.event.RequestAdmitted;
import dev.routingreplay.core.event.RequestFinished;
import dev.routingreplay.core.event.RoundCleared;
import dev.routingreplay.core.host.HostDevice;
import dev.routingreplay.core.pipeline.CapturePipeline;
import dev.routingreplay.core.testing.HostEngine;
import dev.routingreplay.core.testing.Routing;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import reactor.core.publisher.Flux;

class NumpyExportTest {
    private static final String CHECK = String.join("\n",
            "import sys, hashlib, numpy as np",
            "out = sys.argv[1]",
            "lines = open(out + '/manifest.tsv', encoding='utf-8').read().splitlines()[1:]",
            "for line in lines:",
            "    f, rid, rnd, n, l, k, dt, idx, missing = line.split('\\t')",
            "    a = np.load(out + '/' + f)",
            "    assert a.dtype == np.dtype(dt), (f, a.dtype, dt)",
            "    assert a.shape == (int(n), int(l), int(k)), (f, a.shape)",
            "    print(f + '\\t' + hashlib.sha256(a.astype('<i8').tobytes()).hexdigest())");

    @TempDir
    Path tmp;

    static boolean pythonWithNumpy() {
        try {
            Process p = new ProcessBuilder("python3", "-c", "import numpy").redirectErrorStream(true).start();
            return p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException | InterruptedException e) {
            return false;
        }
    }

    private static String sha(long request, int seqLen, RoutingShape shape) throws Exception {
        ByteBuffer b = ByteBuffer.allocate(seqLen * shape.idsPerRow() * 8).order(ByteOrder.LITTLE_ENDIAN);
        for (int p = 0; p < seqLen; p++) {
            for (int l = 0; l < shape.moeLayers(); l++) {
                for (int k = 0; k < shape.topK(); k++) {
                    b.putLong(Routing.id(request, p, l, k, shape.numExperts()));
                }
            }
        }
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(b.array()));
    }

    @ParameterizedTest(name = "{0} experts")
    @ValueSource(ints = {128, 300, 70000})
    void numpyLoadsEveryExportedRequestWithItsDtypeAndShape(int experts) throws Exception {
        Assumptions.assumeTrue(pythonWithNumpy(), "python3 with numpy is not installed (.ci/run installs it)");
        RoutingShape shape = new RoutingShape(3, 2, experts);
        Path store = tmp.resolve("store");
        String[] ids = {"plain-1", "../../escape", "a/b\\c d", "\u00fcn\u00efcode", ".hidden", "plain-1"};
        HostDevice device = new HostDevice();
        try (HostEngine engine = new HostEngine(device, shape, 16);
                ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(store, shape, 256))) {
            List<Supplier<EngineEvent>> script = new ArrayList<>();
            for (int r = 0; r < ids.length; r++) {
                int req = r;
                int seqLen = 3 + r;
                long[] slots = new long[seqLen];
                int[] slotInts = new int[seqLen];
                for (int p = 0; p < seqLen; p++) {
                    slots[p] = 16L * r + p;
                    slotInts[p] = 16 * r + p;
                }
                if (r == ids.length - 1) {
                    script.add(() -> new RoundCleared(0));
                }
                script.add(() -> new RequestAdmitted(ids[req]));
                script.add(() -> engine.step(req, slots, (t, l, k) -> Routing.id(req, t, l, k, experts)));
                script.add(() -> new RequestFinished(ids[req], slotInts));
            }
            CapturePipeline pipeline = CapturePipeline.builder().device(device).sink(sink).ringDepth(2).maxTokensPerStep(16).build();
            Flux.fromIterable(script).map(Supplier::get).transform(pipeline).blockLast(Duration.ofSeconds(30));
        }
        Path out = tmp.resolve("out");
        try (RoutingReplay replay = RoutingReplay.open(store); NumpyExport export = NumpyExport.create(out)) {
            for (ReplayedRequest r : replay.fromStart().toIterable()) {
                export.write(r);
            }
            export.finish();
            assertEquals(ids.length, export.requests());
        }
        try (Stream<Path> files = Files.list(tmp)) {
            assertEquals(List.of("out", "store"), files.map(p -> p.getFileName().toString()).sorted().toList(),
                    "nothing was written outside the output folder");
        }
        Process py = new ProcessBuilder("python3", "-c", CHECK, out.toString()).redirectErrorStream(true).start();
        String printed = new String(py.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(py.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, py.exitValue(), printed);
        Map<String, String> numpySha = new HashMap<>();
        for (String line : printed.strip().split("\n")) {
            String[] parts = line.split("\t");
            numpySha.put(parts[0], parts[1]);
        }
        List<String> manifest = Files.readAllLines(out.resolve("manifest.tsv"));
        assertEquals(ids.length + 1, manifest.size());
        assertEquals(ids.length, numpySha.size(), "one file per request, even for a repeated id");
        for (int r = 0; r < ids.length; r++) {
            String[] row = manifest.get(r + 1).split("\t");
            assertEquals(ids[r], row[1]);
            assertEquals(sha(r, 3 + r, shape), numpySha.get(row[0]), "numpy's view of " + ids[r] + " in " + row[0]);
        }
    }
}
