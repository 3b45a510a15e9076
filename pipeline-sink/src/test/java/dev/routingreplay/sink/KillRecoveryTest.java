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
        CrashWorkload.verify(r);
    }

    @Test
    void anotherProcessReadsWhileWritingAndKill9LosesNothingAcknowledged() throws Exception {
        Process child = new ProcessBuilder(CrashWriter.command(dir, 0, -1)).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        Set<Long> ackedFinishes = new HashSet<>();
        long lastAckedRecord = 0;
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
                if (line.startsWith("ACK J ")) {
                    lastAckedRecord = Long.parseLong(line.substring(6));
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

        // restart: the slot index is rebuilt exactly (every slot against the oracle of the plan's ops up to the
        // journal's tail), and every acknowledged op is in the journal
        long maxFinished;
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, CrashWriter.SHAPE, CrashWriter.SLOTS))) {
            RecoveryReport report = sink.recovery();
            long recovered = CrashWorkload.Oracle.recordsBefore(report.round() * CrashWorkload.ROUND) + report.recordsAfterClear();
            assertTrue(recovered >= lastAckedRecord, report.describe() + ": journal ends at op " + recovered + ", acked " + lastAckedRecord);
            assertTrue(report.moves() > 0 && report.clears() >= 2, "the workload moved and cleared: " + report.describe());
            int compared = CrashWorkload.Oracle.recovered(report.round(), report.recordsAfterClear()).check(sink);
            assertTrue(compared > 0 || report.recordsAfterClear() == 0, "compared " + compared + " slots; " + report.describe());
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
                assertTrue(ids.contains(CrashWorkload.requestId(acked)), "acknowledged request " + acked + " survived");
            }
            maxFinished = max;
        }

        // the run continues where it stopped: replaying the last request again stores it again, as a record that
        // supersedes the first (unless a clear followed it: that starts a new round, so the run resumes after it); its
        // prefix hits read recovered slots
        long resume = maxFinished % CrashWorkload.ROUND == CrashWorkload.ROUND - 1 ? maxFinished + 1 : maxFinished;
        Process again = new ProcessBuilder(CrashWriter.command(dir, resume, maxFinished + 40)).redirectErrorStream(true).start();
        String output = new String(again.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(again.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, again.exitValue(), output);
        assertTrue(output.contains("DONE"), output);
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            List<RequestRouting> all = replay.requests().collectList().block(Duration.ofSeconds(30));
            Set<String> ids = new HashSet<>();
            int replayed = 0;
            for (RequestRouting r : all) {
                if (!ids.add(r.requestId())) {
                    assertEquals(CrashWorkload.requestId(resume), r.requestId(), "only the replayed finish is recorded twice");
                    replayed++;
                }
                verify(r);
            }
            assertEquals(resume == maxFinished ? 1 : 0, replayed, "the replayed finish is a second record");
            assertTrue(ids.contains(CrashWorkload.requestId(maxFinished + 39)));
        }
    }

    static String read(Process p) throws IOException {
        return new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    }
}
