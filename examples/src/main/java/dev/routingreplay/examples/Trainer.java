package dev.routingreplay.examples;

import dev.routingreplay.sink.RoutingReplay;
import dev.routingreplay.examples.cli.CommandErrors;
import dev.routingreplay.examples.cli.CommandException;
import dev.routingreplay.examples.cli.ExitStatus;
import dev.routingreplay.examples.cli.VerboseOption;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * The trainer example: replays a store's request queue as a {@code Flux<RequestRouting>} and checks every request,
 * position by position, against the simulated gate. Exits non-zero on any mismatch, on a request the engine finished
 * that the store lacks, or on a record the engine never finished; with status 3 and one line on a store marked
 * incomplete (its writer failed before its first record or completed run) and on records lost other than by retention
 * (a missing request file, named with its ordinals).
 */
@Command(name = "verify", mixinStandardHelpOptions = true,
        description = "Replay a store like a trainer and check every request's routing against the simulated gate.")
public final class Trainer implements java.util.concurrent.Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Mixin
    VerboseOption verbose;

    @Option(names = "--store", required = true, description = "The store folder.")
    Path store;

    /** Checks the store; 0 when every request matched, 1 otherwise; a missing store is a {@code StoreException}. */
    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        int status = check(store, null, out);
        out.flush();
        return status;
    }

    /**
     * Checks the store at {@code dir}; when {@code expectedIds} is given, also that it holds exactly those requests.
     *
     * @return 0 when everything matches, 1 otherwise
     */
    static int check(Path dir, List<String> expectedIds, PrintWriter out) {
        return check(dir, expectedIds, 0, out);
    }

    /**
     * Checks the store at {@code dir} as {@link #check(Path, List, PrintWriter)} does, where retention deleted
     * {@code recordsDeleted} records (the oldest, {@code ChronicleRoutingSink.usage().recordsDeleted()}): the first
     * {@code recordsDeleted} of {@code expectedIds} (in finish order, the order the store wrote them) are reported as
     * deleted by retention, not as missing, and must all be absent; any other absent id is a failure.
     *
     * @return 0 when everything matches, 1 otherwise
     */
    static int check(Path dir, List<String> expectedIds, long recordsDeleted, PrintWriter out) {
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
            replay.incomplete().ifPresent(reason -> {
                throw new CommandException(ExitStatus.STORE, reason);
            });
            Set<String> seen = ConcurrentHashMap.newKeySet();
            Set<String> duplicates = ConcurrentHashMap.newKeySet();
            TrainerCheck.Report report = TrainerCheck.verify(replay.requests().doOnNext(r -> {
                if (!seen.add(r.requestId())) {
                    duplicates.add(r.requestId());
                }
            }), replay.manifest().shape()).block();
            out.println("trainer: " + report.describe());
            boolean ok = report.ok() && duplicates.isEmpty();
            if (!duplicates.isEmpty()) {
                out.println("trainer: duplicate records: " + duplicates);
            }
            if (expectedIds != null) {
                IdDifference diff = IdDifference.of(expectedIds, seen);
                Set<String> missing = diff.missing();
                if (recordsDeleted > 0) {
                    Set<String> oldest = new HashSet<>(expectedIds.subList(0, (int) Math.min(recordsDeleted, expectedIds.size())));
                    Set<String> pruned = new HashSet<>();
                    missing = new HashSet<>();
                    for (String id : diff.missing()) {
                        (oldest.contains(id) ? pruned : missing).add(id);
                    }
                    out.println("trainer: " + recordsDeleted + " records deleted by retention (the oldest finished), not checked");
                    if (pruned.size() != recordsDeleted) {
                        out.println("trainer: retention deleted " + recordsDeleted + " records, but " + pruned.size()
                                + " of the oldest finished requests are absent");
                        ok = false;
                    }
                }
                if (!missing.isEmpty() || !diff.extra().isEmpty()) {
                    out.println("trainer: " + missing.size() + " finished requests missing from the store " + sample(missing)
                            + ", " + diff.extra().size() + " records the engine never finished " + sample(diff.extra()));
                    ok = false;
                }
            }
            out.println(ok ? "trainer: OK" : "trainer: FAILED");
            return ok ? 0 : 1;
        }
    }

    /**
     * The ids the engine finished that the store lacks, and the stored ids the engine never finished. Built in time
     * linear in the two collections (hash sets, never {@code removeAll} against a list, which is quadratic).
     *
     * @param missing expected ids not stored
     * @param extra stored ids not expected
     */
    public record IdDifference(Set<String> missing, Set<String> extra) {
        /** The difference between {@code expected} (the engine's finished ids) and {@code stored}. */
        public static IdDifference of(Collection<String> expected, Set<String> stored) {
            Set<String> expectedSet = expected instanceof Set<String> set ? set : new HashSet<>(expected);
            Set<String> missing = new HashSet<>();
            for (String id : expectedSet) {
                if (!stored.contains(id)) {
                    missing.add(id);
                }
            }
            Set<String> extra = new HashSet<>();
            for (String id : stored) {
                if (!expectedSet.contains(id)) {
                    extra.add(id);
                }
            }
            return new IdDifference(missing, extra);
        }

        /** Whether the store holds exactly the expected ids. */
        public boolean isEmpty() {
            return missing.isEmpty() && extra.isEmpty();
        }
    }

    private static String sample(Set<String> ids) {
        return ids.stream().limit(5).toList().toString();
    }

    /** Runs the check and exits with its status. */
    public static void main(String[] args) {
        System.exit(CommandErrors.install(new CommandLine(new Trainer())).execute(args));
    }

}
