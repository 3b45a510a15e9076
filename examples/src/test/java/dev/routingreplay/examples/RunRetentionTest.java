package dev.routingreplay.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.routingreplay.examples.cli.CommandRun;
import dev.routingreplay.examples.cli.ExitStatus;
import dev.routingreplay.sink.RoutingReplay;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** {@code r3 run --retain-request-gib} and the final check of a store that retention pruned. */
class RunRetentionTest {
    @TempDir
    Path tmp;

    private static CommandRun r3(String... args) {
        return CommandRun.of(R3Command.commandLine(), args);
    }

    @ParameterizedTest
    @ValueSource(strings = {"0", "0.001", "-1", "2000000", "NaN"})
    void anOutOfRangeLimitIsAUsageErrorAndCreatesNothing(String value) {
        Path out = tmp.resolve("run");
        r3("run", "--out", out.toString(), "--retain-request-gib", value).assertFails(ExitStatus.USAGE,
                "r3 run: Invalid value for option '--retain-request-gib': ", "is not in 0.01..1048576");
        assertFalse(Files.exists(out), "no store is created for a rejected option");
    }

    @Test
    void aRunWithALimitPassesAndTheCheckCountsRecordsRetentionDeletedApartFromMissingOnes() {
        Path out = tmp.resolve("run");
        CommandRun run = r3("run", "--out", out.toString(), "--requests", "8", "--concurrency", "4", "--model", "mixtral-8x7b",
                "--retain-request-gib", "0.5");
        assertEquals(0, run.status(), run.toString());
        assertTrue(run.out().contains("trainer: OK"), run.out());
        assertFalse(run.out().contains("deleted by retention"), "nothing was deleted: " + run.out());

        List<String> stored;
        try (RoutingReplay replay = RoutingReplay.open(out)) {
            stored = replay.requests().map(r -> r.requestId()).collectList().block(Duration.ofSeconds(30));
        }
        // as if retention had deleted the two oldest records: the engine finished them first
        List<String> finished = new ArrayList<>(List.of("p9-gone-1", "p9-gone-2"));
        finished.addAll(stored);

        String text = check(out, finished, 2, 0);
        assertTrue(text.contains("trainer: 2 records deleted by retention (the oldest finished), not checked"), text);
        assertTrue(text.contains("trainer: OK"), text);

        text = check(out, finished, 1, 1);
        assertTrue(text.contains("trainer: 1 finished requests missing from the store [p9-gone-2]"), text);

        text = check(out, finished, 3, 1);
        assertTrue(text.contains("retention deleted 3 records, but 2 of the oldest finished requests are absent"), text);

        text = check(out, finished, 0, 1);
        assertTrue(text.contains("trainer: 2 finished requests missing from the store"), text);
        assertFalse(text.contains("deleted by retention"), text);
    }

    private static String check(Path dir, List<String> finished, long deleted, int expectedStatus) {
        StringWriter text = new StringWriter();
        int status = Trainer.check(dir, finished, deleted, new PrintWriter(text, true));
        assertEquals(expectedStatus, status, text.toString());
        return text.toString();
    }
}
