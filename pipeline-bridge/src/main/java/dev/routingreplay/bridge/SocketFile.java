package dev.routingreplay.bridge;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;

/** The socket file of a server: checked and cleared of a stale socket before binding, removed after closing. */
final class SocketFile {
    /** Bytes a Unix domain socket path may take on Linux ({@code sun_path} is 108 bytes with the terminating NUL). */
    static final int MAX_PATH_BYTES = 107;
    private static final int S_IFMT = 0170000;
    private static final int S_IFSOCK = 0140000;

    private SocketFile() {
    }

    /**
     * Makes {@code path} free to bind: removes a stale socket a dead sidecar left behind.
     *
     * @throws IllegalArgumentException naming the path when it is too long, or exists and is not a socket (it is
     *     never deleted then)
     * @throws IllegalStateException when a live process listens on it
     * @throws UncheckedIOException when the stale socket cannot be deleted
     */
    static void prepare(Path path) {
        int bytes = path.toString().getBytes(StandardCharsets.UTF_8).length;
        if (bytes == 0 || bytes > MAX_PATH_BYTES) {
            throw new IllegalArgumentException("socket path " + path + " is " + bytes + " bytes; a Unix domain socket path holds 1 to "
                    + MAX_PATH_BYTES);
        }
        if (!Files.exists(path, LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        if (!isSocket(path)) {
            throw new IllegalArgumentException("socket path " + path + " exists and is not a socket; not replacing it");
        }
        if (listening(path)) {
            throw new IllegalStateException("socket path " + path + ": another process listens on it (another sidecar?)");
        }
        try {
            Files.deleteIfExists(path);
        } catch (IOException e) {
            throw new UncheckedIOException("socket path " + path + ": cannot remove the stale socket: " + e.getMessage(), e);
        }
    }

    /** Deletes the socket file if it is still there; false when that failed. */
    static boolean remove(Path path) {
        try {
            Files.deleteIfExists(path);
            return true;
        } catch (IOException e) {
            return false;
        }
    }

    private static boolean isSocket(Path path) {
        try {
            Object mode = Files.getAttribute(path, "unix:mode", LinkOption.NOFOLLOW_LINKS);
            return ((Integer) mode & S_IFMT) == S_IFSOCK;
        } catch (UnsupportedOperationException | IllegalArgumentException | IOException e) {
            return !Files.isRegularFile(path, LinkOption.NOFOLLOW_LINKS) && !Files.isDirectory(path, LinkOption.NOFOLLOW_LINKS)
                    && !Files.isSymbolicLink(path);
        }
    }

    private static boolean listening(Path path) {
        try (SocketChannel probe = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            return probe.connect(UnixDomainSocketAddress.of(path));
        } catch (IOException e) {
            return false;
        }
    }
}
