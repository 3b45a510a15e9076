package dev.routingreplay.examples;

import dev.routingreplay.sink.RoutingReplay;
import dev.routingreplay.sink.CommandErrors;
import dev.routingreplay.sink.VerboseOption;
import java.io.PrintWriter;
import java.nio.file.Path;
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
 * that the store lacks, or on a record the engine never finished.
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
        try (RoutingReplay replay = RoutingReplay.open(dir)) {
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
                Set<String> missing = new HashSet<>(expectedIds);
                missing.removeAll(seen);
                Set<String> extra = new HashSet<>(seen);
                extra.removeAll(expectedIds);
                if (!missing.isEmpty() || !extra.isEmpty()) {
                    out.println("trainer: " + missing.size() + " finished requests missing from the store " + sample(missing) + ", "
                            + extra.size() + " records the engine never finished " + sample(extra));
                    ok = false;
                }
            }
            out.println(ok ? "trainer: OK" : "trainer: FAILED");
            return ok ? 0 : 1;
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
