package dev.routingreplay.sink;

import dev.routingreplay.core.sink.RequestRouting;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;

/** Writes a request's routing as a numpy {@code .npy} file (format 1.0) with its real dtype and shape. */
public final class NpyWriter {
    private NpyWriter() {
    }

    /** The {@code .npy} header for {@code routing}: magic, version, length, and the padded dict. */
    static byte[] header(RequestRouting routing) {
        return header(routing.dtype().numpyDescr(), routing.seqLen(), routing.shape().moeLayers(), routing.shape().topK());
    }

    /** The {@code .npy} header of a C-order array of numpy dtype {@code descr} (e.g. {@code <i8}) and 3-d shape. */
    static byte[] header(String descr, long rows, long layers, long topK) {
        String dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + rows + ", " + layers + ", " + topK + "), }";
        int unpadded = 10 + dict.length() + 1;
        int padding = (64 - unpadded % 64) % 64;
        String text = dict + " ".repeat(padding) + "\n";
        byte[] textBytes = text.getBytes(StandardCharsets.US_ASCII);
        ByteBuffer b = ByteBuffer.allocate(10 + textBytes.length);
        b.put((byte) 0x93).put("NUMPY".getBytes(StandardCharsets.US_ASCII)).put((byte) 1).put((byte) 0);
        b.put((byte) (textBytes.length & 0xFF)).put((byte) (textBytes.length >>> 8));
        b.put(textBytes);
        return b.array();
    }

    /**
     * Writes {@code routing} to {@code file} through a temporary file and an atomic rename, so a reader never sees a
     * partial file.
     *
     * @throws StoreException naming the file when it cannot be written
     */
    public static void write(RequestRouting routing, Path file) {
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.WRITE)) {
            ByteBuffer header = ByteBuffer.wrap(header(routing));
            while (header.hasRemaining()) {
                ch.write(header);
            }
            ByteBuffer rows = routing.rows();
            while (rows.hasRemaining()) {
                ch.write(rows);
            }
        } catch (IOException e) {
            throw new StoreException(file, "cannot write the .npy file", e);
        }
        try {
            try {
                Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING);
            }
        } catch (IOException e) {
            throw new StoreException(file, "cannot move the .npy file into place", e);
        }
    }
}
