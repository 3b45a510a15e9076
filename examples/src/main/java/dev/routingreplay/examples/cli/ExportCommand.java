package dev.routingreplay.examples.cli;

import dev.routingreplay.sink.NumpyExport;
import dev.routingreplay.sink.ReplayedRequest;
import dev.routingreplay.sink.RoutingReplay;
import dev.routingreplay.sink.StoreException;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.LinkOption;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.stream.Stream;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.ParameterException;
import picocli.CommandLine.Spec;
import reactor.core.publisher.Flux;

/**
 * {@code r3 export}: writes finished requests of a store as {@code .npy} files, one per request, plus
 * {@code manifest.tsv} ({@link NumpyExport} does the writing). Every option is checked
 * and the store opened before anything is written; failures exit with an {@link ExitStatus} and one line. The output
 * folder holds exactly one export: it must be new or empty, or {@code --replace} deletes the earlier export's files.
 */
@Command(name = "r3-export", mixinStandardHelpOptions = true,
        description = "Export a routing store's finished requests as numpy .npy files [seq_len, layers, top_k].")
public final class ExportCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Mixin
    VerboseOption verbose;

    @Option(names = "--store", required = true, description = "The store folder (holds store.properties).")
    Path store;

    @Option(names = "--out", required = true, description = "Output folder: new or empty (created if absent).")
    Path out;

    @Option(names = "--replace", description = "--out holds an earlier export (only .npy files and manifest.tsv): delete them first.")
    boolean replace;

    @Option(names = "--after", converter = HexIndexConverter.class,
            description = "Only requests after this queue index (hex, from manifest.tsv).")
    Long afterIndex;

    @Option(names = "--limit", description = "Most requests to export, 0 or more (default: all).")
    Long limit;

    /** Exports; the status is {@link ExitStatus#OK} or the command fails with a {@link CommandException} or a parameter error. */
    @Override
    public Integer call() throws IOException {
        if (limit != null && limit < 0) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '--limit': " + limit + " is negative; "
                    + "want a count of requests (0 or more)");
        }
        if (out.toString().isBlank()) {
            throw new ParameterException(spec.commandLine(), "Invalid value for option '--out': '" + out + "' is empty; name a folder");
        }
        if (Files.exists(out) && !Files.isDirectory(out)) {
            throw new CommandException(ExitStatus.OUTPUT_EXISTS, "--out " + out + " exists and is not a folder");
        }
        List<Path> earlier = earlierExport();
        PrintWriter stdout = spec.commandLine().getOut();
        long count = 0;
        long bytes = 0;
        try (RoutingReplay replay = RoutingReplay.open(store)) {
            replay.incomplete().ifPresent(reason -> {
                throw new CommandException(ExitStatus.STORE, reason);
            });
            Flux<ReplayedRequest> requests = replay.fromStart();
            if (afterIndex != null) {
                try {
                    replay.at(afterIndex).block();
                } catch (StoreException e) {
                    throw new CommandException(ExitStatus.USAGE, "--after " + Long.toHexString(afterIndex) + ": the store holds no record"
                            + " at that index (deleted by retention, or never written)", e);
                }
                requests = replay.after(afterIndex);
            }
            if (limit != null) {
                requests = requests.take(limit);
            }
            for (Path file : earlier) {
                Files.delete(file);
            }
            try (NumpyExport export = NumpyExport.create(out)) {
                for (ReplayedRequest r : requests.toIterable()) {
                    try {
                        export.write(r);
                    } catch (StoreException e) {
                        throw new CommandException(ExitStatus.OUTPUT_IO, e.getMessage(), e);
                    }
                }
                try {
                    export.finish();
                } catch (IOException e) {
                    throw new CommandException(ExitStatus.OUTPUT_IO, "--out " + out + ": writing " + NumpyExport.MANIFEST + " failed", e);
                }
                count = export.requests();
                bytes = export.routingBytes();
            }
        }
        stdout.printf("exported %d requests (%.1f MB of routing) to %s%n", count, bytes / 1e6, out);
        stdout.flush();
        return ExitStatus.OK.code();
    }

    /**
     * The files of an earlier export in {@code --out} that {@code --replace} deletes; none when the folder is absent or
     * empty. A folder with files is refused without {@code --replace}, and with it when it holds anything an export
     * does not write, so stale {@code .npy} files never sit beside a new {@code manifest.tsv}.
     */
    private List<Path> earlierExport() throws IOException {
        if (!Files.isDirectory(out)) {
            return List.of();
        }
        List<Path> files;
        try (Stream<Path> list = Files.list(out)) {
            files = list.sorted().toList();
        }
        if (files.isEmpty()) {
            return files;
        }
        if (!replace) {
            throw new CommandException(ExitStatus.OUTPUT_EXISTS, "--out " + out + " holds " + files.size() + " files already; choose a "
                    + "new or empty folder, or pass --replace to delete an earlier export there");
        }
        for (Path f : files) {
            String name = f.getFileName().toString();
            if (!Files.isRegularFile(f, LinkOption.NOFOLLOW_LINKS) || !(name.endsWith(NumpyExport.NPY_SUFFIX) || name.equals(NumpyExport.MANIFEST))) {
                throw new CommandException(ExitStatus.OUTPUT_EXISTS, "--out " + out + " holds " + name + ", which an export does not "
                        + "write; --replace deletes only an earlier export's .npy files and manifest.tsv");
            }
        }
        return files;
    }

    /** Runs the command and exits with its {@link ExitStatus}. */
    public static void main(String[] args) {
        System.exit(CommandErrors.install(new CommandLine(new ExportCommand())).execute(args));
    }
}
