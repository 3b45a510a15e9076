package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.routingreplay.core.sink.RequestRouting;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.condition.EnabledIfSystemProperty;
import org.junit.jupiter.api.io.TempDir;

/**
 * kill -9 of the writer at random moments, many times: the figure behind docs/reliability.md. Each run starts
 * {@link CrashWriter} (steps, prefix hits, moves, swaps, clears), kills it after a random number of acknowledged
 * finishes (or a random time), reopens the store (slot index checked slot by slot against the plan's oracle), replays
 * every record (checksums, routing position by position, no duplicates, every acknowledged finish present), then
 * resumes the writer for 40 more requests.
 *
 * <p>Off by default (it takes minutes): {@code mvn -B -pl pipeline-sink -am verify -Dtest=KillLoopTest
 * -Dsurefire.failIfNoSpecifiedTests=false -Dr3.killRuns=20}. Prints one table row per run and a summary; fails if any
 * run lost, tore or duplicated anything.
 */
@EnabledIfSystemProperty(named = "r3.killRuns", matches = "[1-9][0-9]*")
class KillLoopTest {
    @TempDir
    Path root;

    /** What one run saw. */
    record Outcome(int run, long killAfterMillis, int ackedFinishes, long ackedOps, long recoveredOps, int compared, long moves,
            long clears, int stored, int missing, int duplicates, int wrong, boolean resumed) {
        boolean ok() {
            return missing == 0 && duplicates == 0 && wrong == 0 && resumed && recoveredOps >= ackedOps;
        }

        String row() {
            return String.format("| %d | %d | %d | %d | %d | %d | %d / %d | %d | %d | %d | %d | %s |", run, killAfterMillis, ackedFinishes,
                    ackedOps, recoveredOps, compared, moves, clears, stored, missing, duplicates, wrong, resumed ? "yes" : "NO");
        }
    }

    @Test
    @Timeout(1800)
    void killNineAtRandomMomentsLosesNothingAcknowledged() throws Exception {
        int runs = Integer.getInteger("r3.killRuns");
        long seed = Long.getLong("r3.killSeed", System.nanoTime());
        Random random = new Random(seed);
        List<Outcome> outcomes = new ArrayList<>();
        StringBuilder table = new StringBuilder("seed " + seed + "\n| run | killed after ms | acked finishes | acked journal ops | "
                + "recovered ops | slots compared | moves / clears recovered | records | missing acked | duplicates | wrong routing | "
                + "resumed |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (int run = 1; run <= runs; run++) {
            // after the writer JVM started (about 1 s here), up to 6 s of writing
            Outcome o = once(run, root.resolve("run-" + run), 1000 + random.nextInt(5000));
            outcomes.add(o);
            table.append(o.row()).append('\n');
            System.out.println(o.row());
        }
        long ok = outcomes.stream().filter(Outcome::ok).count();
        table.append("\n").append(ok).append(" of ").append(runs).append(" runs: nothing acknowledged lost, no torn or duplicate record, resumed\n");
        Path report = Path.of("target", "kill-loop.md");
        Files.createDirectories(report.getParent());
        Files.writeString(report, table.toString());
        System.out.println(table);
        assertEquals(runs, ok, table.toString());
    }

    private static Outcome once(int run, Path dir, long killAfterMillis) throws Exception {
        Process child = new ProcessBuilder(CrashWriter.command(dir, 0, -1)).redirectError(ProcessBuilder.Redirect.DISCARD).start();
        Set<Long> acked = new HashSet<>();
        long ackedOps = 0;
        try (BufferedReader out = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8))) {
            String line = out.readLine(); // RECOVERED ...
            long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(killAfterMillis);
            while (System.nanoTime() < deadline && (line = out.readLine()) != null) {
                if (line.startsWith("ACK J ")) {
                    ackedOps = Long.parseLong(line.substring(6));
                } else if (line.startsWith("ACK FINISH ")) {
                    acked.add(Long.parseLong(line.substring(11)));
                }
            }
            child.destroyForcibly(); // SIGKILL, at whatever the writer was doing
            child.waitFor(10, TimeUnit.SECONDS);
        } finally {
            child.destroyForcibly();
        }
        long recoveredOps;
        int compared;
        long moves;
        long clears;
        try (ChronicleRoutingSink sink = ChronicleRoutingSink.open(StoreConfig.of(dir, CrashWriter.SHAPE, CrashWriter.SLOTS))) {
            RecoveryReport report = sink.recovery();
            recoveredOps = CrashWorkload.Oracle.recordsBefore(report.round() * CrashWorkload.ROUND) + report.recordsAfterClear();
            compared = CrashWorkload.Oracle.recovered(report.round(), report.recordsAfterClear()).check(sink);
            moves = report.moves();
            clears = report.clears();
        }
        int stored = 0;
        int duplicates = 0;
        int wrong = 0;
        long max = -1;
        Set<String> ids = new HashSet<>();
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            for (RequestRouting r : replay.requests().collectList().block(Duration.ofSeconds(60))) {
                stored++;
                if (!ids.add(r.requestId())) {
                    duplicates++;
                }
                try {
                    CrashWorkload.verify(r);
                } catch (AssertionError | RuntimeException e) {
                    wrong++;
                }
                max = Math.max(max, CrashWorkload.request(r.requestId()));
            }
        }
        int missing = 0;
        for (long a : acked) {
            if (!ids.contains(CrashWorkload.requestId(a))) {
                missing++;
            }
        }
        long resume = max % CrashWorkload.ROUND == CrashWorkload.ROUND - 1 ? max + 1 : Math.max(max, 0);
        Process again = new ProcessBuilder(CrashWriter.command(dir, resume, resume + 40)).redirectErrorStream(true).start();
        String output = new String(again.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        boolean resumed = again.waitFor(60, TimeUnit.SECONDS) && again.exitValue() == 0 && output.contains("DONE");
        return new Outcome(run, killAfterMillis, acked.size(), ackedOps, recoveredOps, compared, moves, clears, stored, missing, duplicates,
                wrong, resumed);
    }
}
