package dev.routingreplay.examples.bench;

import dev.routingreplay.examples.Trainer;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;

/**
 * The main job's final check of request ids (the engine's finished ids against the stored ones): the linear
 * {@code Trainer.IdDifference} at 25k to 1M requests, and the quadratic {@code removeAll} it replaced at 25k for
 * reference. docs/benchmarks.md has the figures.
 */
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
public class TrainerCheckBenchmark {
    /** Ids as the simulated engine names them, every one stored but one, and one stored that was never finished. */
    abstract static class Ids {
        final List<String> expected = new ArrayList<>();
        final Set<String> stored = new HashSet<>();

        void fill(int n) {
            for (int i = 0; i < n; i++) {
                expected.add("p" + i / 4 + "-L" + (16 + i % 97) + "-s" + i % 4);
                stored.add("p" + (i + 1) / 4 + "-L" + (16 + (i + 1) % 97) + "-s" + (i + 1) % 4);
            }
        }
    }

    /** The linear check's input. */
    @State(Scope.Benchmark)
    public static class Linear extends Ids {
        @Param({"25000", "100000", "1000000"})
        public int requests;

        /** Builds the ids once per trial. */
        @Setup
        public void setup() {
            fill(requests);
        }
    }

    /** The quadratic check's input: only a size it finishes in reasonable time. */
    @State(Scope.Benchmark)
    public static class Quadratic extends Ids {
        @Param({"25000"})
        public int requests;

        /** Builds the ids once per trial. */
        @Setup
        public void setup() {
            fill(requests);
        }
    }

    /** The check as it is now. */
    @Benchmark
    public Object linear(Linear s) {
        return Trainer.IdDifference.of(s.expected, s.stored);
    }

    /** The check as it was (removeAll of a list from a set: a contains() scan of the list per element). */
    @Benchmark
    public Object quadraticBefore(Quadratic s) {
        Set<String> missing = new HashSet<>(s.expected);
        missing.removeAll(s.stored);
        Set<String> extra = new HashSet<>(s.stored);
        extra.removeAll(s.expected);
        return List.of(missing, extra);
    }
}
