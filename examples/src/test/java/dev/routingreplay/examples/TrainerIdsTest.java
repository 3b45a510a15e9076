package dev.routingreplay.examples;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Test;

/** The final check's id reconciliation: right, and linear (a million ids well within a second's order). */
class TrainerIdsTest {
    @Test
    void missingAndExtraIdsAreFound() {
        Trainer.IdDifference diff = Trainer.IdDifference.of(List.of("a", "b", "c"), Set.of("b", "c", "x"));
        assertEquals(Set.of("a"), diff.missing());
        assertEquals(Set.of("x"), diff.extra());
        assertTrue(Trainer.IdDifference.of(List.of("a", "b"), Set.of("b", "a")).isEmpty());
    }

    @Test
    void aMillionIdsReconcileInLinearTime() {
        // quadratic (removeAll against a list) took 17 s at 100k and did not finish 300k in 6 minutes
        List<String> expected = new ArrayList<>();
        Set<String> stored = new HashSet<>();
        for (int i = 0; i < 1_000_000; i++) {
            expected.add("p" + i + "-L16-s0");
            stored.add("p" + (i + 1) + "-L16-s0");
        }
        Trainer.IdDifference diff = Assertions.assertTimeoutPreemptively(Duration.ofSeconds(20),
                () -> Trainer.IdDifference.of(expected, stored));
        assertEquals(Set.of("p0-L16-s0"), diff.missing());
        assertEquals(Set.of("p1000000-L16-s0"), diff.extra());
    }
}
