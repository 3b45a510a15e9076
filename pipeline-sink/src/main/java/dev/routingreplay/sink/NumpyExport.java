package dev.routingreplay.sink;

import dev.routingreplay.core.sink.RequestRouting;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Writes replayed requests into one folder as numpy {@code .npy} files {@code [seq_len, layers, top_k]}, one per request,
 * plus {@link #MANIFEST} (a tab-separated table: file, request id, round, seq_len, layers, top_k, dtype, queue index in
 * hex, missing rows). A request with missing rows is written as int16 (int32 past 32768 experts) with -1 in every id
 * of a missing row ({@link NpyWriter#dtypeFor}); the others in their stored dtype. File names are safe and unique within the folder, whatever the request ids hold (a repeated id gets its own
 * file); nothing is written outside the folder. Not thread-safe: one writer per export.
 *
 * <pre>{@code
 * try (RoutingReplay replay = RoutingReplay.open(store); NumpyExport export = NumpyExport.create(out)) {
 *     for (ReplayedRequest r : replay.fromStart().toIterable()) {
 *         export.write(r);
 *     }
 *     export.finish();
 * }
 * }</pre>
 */
public final class NumpyExport implements AutoCloseable {
    /** The manifest's file name inside the export folder. */
    public static final String MANIFEST = "manifest.tsv";
    /** The suffix of every request file. */
    public static final String NPY_SUFFIX = ".npy";

    private final ExportFileNames names;
    private final PrintWriter manifest;
    private long requests;
    private long routingBytes;

    private NumpyExport(Path folder, PrintWriter manifest) {
        this.names = new ExportFileNames(folder);
        this.manifest = manifest;
    }

    /**
     * Creates {@code folder} (and its parents) if absent and starts its manifest with the header line; a manifest already
     * there is replaced, other files are left alone.
     *
     * @throws IOException when the folder or the manifest cannot be created
     */
    public static NumpyExport create(Path folder) throws IOException {
        Files.createDirectories(folder);
        PrintWriter manifest = new PrintWriter(Files.newBufferedWriter(folder.resolve(MANIFEST), StandardCharsets.UTF_8));
        manifest.println("file\trequest_id\tround\tseq_len\tlayers\ttop_k\tdtype\tindex\tmissing_rows");
        return new NumpyExport(folder, manifest);
    }

    /**
     * Writes {@code request}'s routing as one {@code .npy} file (moved into place whole) and adds its manifest line.
     *
     * @throws StoreException naming the file when it cannot be written
     */
    public void write(ReplayedRequest request) {
        RequestRouting routing = request.routing();
        Path file = names.fileFor(routing.requestId(), NPY_SUFFIX);
        NpyWriter.write(routing, file);
        manifest.printf("%s\t%s\t%d\t%d\t%d\t%d\t%s\t%x\t%d%n", file.getFileName(), routing.requestId().replace('\t', ' ')
                .replace('\n', ' '), request.round(), routing.seqLen(), routing.shape().moeLayers(), routing.shape().topK(),
                NpyWriter.dtypeFor(routing), request.index(), routing.missingRowCount());
        requests++;
        routingBytes += routing.rows().remaining();
    }

    /**
     * Flushes the manifest; call it after the last {@link #write}.
     *
     * @throws IOException when any manifest line could not be written (the manifest is then incomplete)
     */
    public void finish() throws IOException {
        if (manifest.checkError()) {
            throw new IOException("writing " + MANIFEST + " failed");
        }
    }

    /** The requests written so far. */
    public long requests() {
        return requests;
    }

    /** The routing bytes (packed ids, without the {@code .npy} headers) written so far. */
    public long routingBytes() {
        return routingBytes;
    }

    /** Closes the manifest; call {@link #finish()} first to learn whether it is complete. */
    @Override
    public void close() {
        manifest.close();
    }
}
