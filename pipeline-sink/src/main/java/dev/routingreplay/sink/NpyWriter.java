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

/**
 * Writes a request's routing as a numpy {@code .npy} file (format 1.0) with its real dtype and shape; a record with
 * missing rows, which its stored dtype cannot express, is written in {@link #dtypeFor}'s signed dtype with every id of
 * a missing row -1.
 */
public final class NpyWriter {
    private NpyWriter() {
    }

    /** The {@code .npy} header for {@code routing}: magic, version, length, and the padded dict. */
    static byte[] header(RequestRouting routing) {
        return header(descr(dtypeFor(routing)), routing.seqLen(), routing.shape().moeLayers(), routing.shape().topK());
    }

    /**
     * The numpy dtype name {@code routing} is written in: its stored dtype when every row is recorded, else the
     * smallest signed dtype that holds its ids and -1 ({@code int16} up to 32768 experts, else {@code int32}).
     */
    public static String dtypeFor(RequestRouting routing) {
        if (routing.missingRowCount() == 0) {
            return routing.dtype().numpyName();
        }
        return routing.shape().numExperts() <= Short.MAX_VALUE + 1 ? "int16" : "int32";
    }

    private static String descr(String numpyName) {
        switch (numpyName) {
            case "int16":
                return "<i2";
            case "int32":
                return "<i4";
            case "uint16":
                return "<u2";
            default:
                return "|u1";
        }
    }

    /** The array bytes of {@code routing} as {@link #dtypeFor} says, little endian. */
    private static ByteBuffer body(RequestRouting routing) {
        if (routing.missingRowCount() == 0) {
            return routing.rows();
        }
        int[] ids = routing.toIntArray();
        boolean narrow = dtypeFor(routing).equals("int16");
        ByteBuffer out = ByteBuffer.allocate(ids.length * (narrow ? 2 : 4)).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (int id : ids) {
            if (narrow) {
                out.putShort((short) id);
            } else {
                out.putInt(id);
            }
        }
        return out.flip();
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
            ByteBuffer rows = body(routing);
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
