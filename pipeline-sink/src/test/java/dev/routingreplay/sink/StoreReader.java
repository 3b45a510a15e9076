package dev.routingreplay.sink;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/**
 * A reader process for the read-only and PID-namespace tests. Arguments: store folder, number of opens. Each open
 * reads every request (each checked against {@link CrashWorkload}) and prints {@code READ n}; then it prints what a
 * write into the store folder does ({@code WRITE refused: ...} on a read-only mount), and what a named reader does
 * ({@code NAMED refused: ...} or {@code NAMED read n}).
 */
public final class StoreReader {
    private StoreReader() {
    }

    /** Runs the reader. */
    public static void main(String[] args) {
        Path dir = Path.of(args[0]);
        int opens = Integer.parseInt(args[1]);
        for (int i = 0; i < opens; i++) {
            try (RoutingReplay replay = RoutingReplay.open(dir)) {
                List<ReplayedRequest> all = replay.fromStart().collectList().block(Duration.ofSeconds(30));
                for (ReplayedRequest r : all) {
                    CrashWorkload.verify(r.routing());
                }
                if (!all.isEmpty()) {
                    ReplayedRequest last = all.get(all.size() - 1);
                    if (!replay.at(last.index()).block(Duration.ofSeconds(10)).routing().requestId().equals(last.routing().requestId())) {
                        throw new AssertionError("at(" + Long.toHexString(last.index()) + ") returned another record");
                    }
                }
                System.out.println("READ " + all.size());
                if (i == opens - 1) {
                    try {
                        Files.delete(Files.createFile(dir.resolve("write-probe")));
                        System.out.println("WRITE allowed");
                    } catch (IOException e) {
                        System.out.println("WRITE refused: " + e);
                    }
                    try {
                        System.out.println("NAMED read " + replay.fromReader("trainer", false).count().block(Duration.ofSeconds(30)));
                    } catch (StoreException e) {
                        System.out.println("NAMED refused: " + e.getMessage());
                    }
                }
            }
            System.out.flush();
        }
    }
}
