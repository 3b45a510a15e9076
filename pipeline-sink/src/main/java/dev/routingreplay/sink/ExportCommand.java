package dev.routingreplay.sink;

import dev.routingreplay.core.sink.RequestRouting;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code r3-export}: writes finished requests of a store as {@code .npy} files, one per request, plus
 * {@code manifest.tsv} (file, request id, round, seq_len, layers, top_k, dtype, queue index).
 */
@Command(name = "r3-export", mixinStandardHelpOptions = true,
        description = "Export a routing store's finished requests as numpy .npy files [seq_len, layers, top_k].")
public final class ExportCommand implements Callable<Integer> {
    @Option(names = "--store", required = true, description = "The store folder (holds store.properties).")
    Path store;

    @Option(names = "--out", required = true, description = "Output folder (created if absent).")
    Path out;

    @Option(names = "--after", description = "Only requests after this queue index (hex, from manifest.tsv).")
    String afterIndex;

    @Option(names = "--limit", defaultValue = "-1", description = "Most requests to export (default: all).")
    long limit;

    @Override
    public Integer call() throws IOException {
        Files.createDirectories(out);
        ExportFileNames names = new ExportFileNames(out);
        long count = 0;
        long bytes = 0;
        try (RoutingReplay replay = RoutingReplay.open(store);
                PrintWriter manifest = new PrintWriter(Files.newBufferedWriter(out.resolve("manifest.tsv"), StandardCharsets.UTF_8))) {
            manifest.println("file\trequest_id\tround\tseq_len\tlayers\ttop_k\tdtype\tindex");
            var requests = afterIndex == null ? replay.fromStart() : replay.after(Long.parseLong(afterIndex, 16));
            if (limit >= 0) {
                requests = requests.take(limit);
            }
            for (ReplayedRequest r : requests.toIterable()) {
                RequestRouting routing = r.routing();
                Path file = names.fileFor(routing.requestId(), ".npy");
                NpyWriter.write(routing, file);
                manifest.printf("%s\t%s\t%d\t%d\t%d\t%d\t%s\t%x%n", file.getFileName(), routing.requestId().replace('\t', ' ')
                        .replace('\n', ' '), r.round(), routing.seqLen(), routing.shape().moeLayers(), routing.shape().topK(),
                        routing.dtype().numpyName(), r.index());
                count++;
                bytes += routing.rows().remaining();
            }
        }
        System.out.printf("exported %d requests (%.1f MB of routing) to %s%n", count, bytes / 1e6, out);
        return 0;
    }

    /** Runs the command and exits with its status. */
    public static void main(String[] args) {
        System.exit(new CommandLine(new ExportCommand()).execute(args));
    }
}
