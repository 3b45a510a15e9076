package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.core.sink.RequestRouting;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import reactor.core.Disposable;

class KillRecoveryTest {
    @TempDir
    Path dir;

    private static void verify(RequestRouting r) {
        long req = Long.parseLong(r.requestId().substring("crash-".length()));
        assertEquals(8, r.seqLen(), r.requestId());
        for (int p = 0; p < 8; p++) {
            for (int l = 0; l < CrashWriter.SHAPE.moeLayers(); l++) {
                for (int k = 0; k < CrashWriter.SHAPE.topK(); k++) {
                    assertEquals(CrashWriter.id(req, p, l, k), r.id(p, l, k), r.requestId() + " position " + p);
                }
            }
        }
    }

    @Test
    void anotherProcessReadsWhileWritingAndKill9LosesNothingAcknowledged() throws Exception {
        Process child = new ProcessBuilder(CrashWriter.command(dir, 0, -1)).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        Set<Long> ackedFinishes = new HashSet<>();
        long lastAckedStep = -1;
        Set<String> seenLive = ConcurrentHashMap.newKeySet();
        List<Throwable> liveErrors = new ArrayList<>();
        Disposable live = null;
        try (BufferedReader out = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8))) {
            String line = out.readLine();
            assertTrue(line != null && line.startsWith("RECOVERED"), "child said: " + line);
            RoutingReplay replay = RoutingReplay.open(dir);
            live = replay.fromStartThenLive().subscribe(r -> {
                verify(r.routing());
                seenLive.add(r.routing().requestId());
            }, liveErrors::add);
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (ackedFinishes.size() < 300 && System.nanoTime() < deadline && (line = out.readLine()) != null) {
                if (line.startsWith("ACK STEP ")) {
                    lastAckedStep = Long.parseLong(line.substring(9));
                } else if (line.startsWith("ACK FINISH ")) {
                    ackedFinishes.add(Long.parseLong(line.substring(11)));
                }
            }
            assertTrue(child.isAlive(), "the writer is still running when the reader checks");
            long waitLive = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (seenLive.size() < 100 && System.nanoTime() < waitLive) {
                Thread.sleep(10);
            }
            assertTrue(seenLive.size() >= 100, "the reader saw requests while the writer ran: " + seenLive.size());
            child.destroyForcibly(); // SIGKILL
            assertTrue(child.waitFor(10, TimeUnit.SECONDS));
            // acknowledgements still in the pipe when the kill closed it are simply not counted
        } finally {
            if (live != null) {
                live.dispose();
            }
            child.destroyForcibly();
        }
        assertTrue(liveErrors.isEmpty(), "live reader errors: " + liveErrors);
        assertTrue(ackedFinishes.size() >= 300);

        // restart: the slot index is rebuilt and every acknowledged step and request is there, once
        long maxFinished;
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, CrashWriter.SHAPE, CrashWriter.SLOTS))) {
            assertTrue(sink.recovery().lastStepId() >= lastAckedStep, sink.recovery().describe() + " vs acked step " + lastAckedStep);
            // the newest step in the journal wrote its slots last: the rebuilt index must hold exactly its rows
            long newest = sink.recovery().lastStepId();
            long r = newest / 2;
            int half = (int) (newest % 2);
            int[] slots = new int[4];
            for (int t = 0; t < 4; t++) {
                slots[t] = CrashWriter.slot(r, half * 4 + t);
            }
            RequestRouting rows = sink.read(slots);
            for (int t = 0; t < 4; t++) {
                assertEquals(CrashWriter.id(r, half * 4 + t, 2, 1), rows.id(t, 2, 1), "rebuilt slot index, step " + newest);
            }
        }
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            List<RequestRouting> all = replay.requests().collectList().block(Duration.ofSeconds(30));
            Set<String> ids = new HashSet<>();
            long max = -1;
            for (RequestRouting r : all) {
                assertTrue(ids.add(r.requestId()), "duplicate record " + r.requestId());
                verify(r);
                max = Math.max(max, Long.parseLong(r.requestId().substring(6)));
            }
            for (long acked : ackedFinishes) {
                assertTrue(ids.contains(CrashWriter.requestId(acked)), "acknowledged request " + acked + " survived");
            }
            maxFinished = max;
        }

        // the run continues where it stopped: replaying the last request again does not duplicate it
        Process again = new ProcessBuilder(CrashWriter.command(dir, maxFinished, maxFinished + 40)).redirectErrorStream(true).start();
        String output = new String(again.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(again.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, again.exitValue(), output);
        assertTrue(output.contains("DONE"), output);
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            List<RequestRouting> all = replay.requests().collectList().block(Duration.ofSeconds(30));
            Set<String> ids = new HashSet<>();
            for (RequestRouting r : all) {
                assertTrue(ids.add(r.requestId()), "duplicate record " + r.requestId());
                verify(r);
            }
            assertTrue(ids.contains(CrashWriter.requestId(maxFinished + 39)));
        }
    }

    static String read(Process p) throws IOException {
        return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    }
}
