package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Many requests on one kept-alive connection, each sent as soon as the previous answer was read: every one is answered.
 * (Answers started or completed off the event loop, or a .npy with a content-length, left a request unanswered now and
 * then: a 200 read from a replay reader, then two quick 404s, and the second 404 never came.)
 */
@Timeout(120)
class ReplayServerKeepAliveTest {
    @TempDir
    Path dir;

    /** Reads one HTTP/1.1 response (content-length or chunked) and returns its status. */
    private static int readResponse(InputStream in) throws IOException {
        String head = readHead(in);
        int status = Integer.parseInt(head.substring(9, 12));
        String lower = head.toLowerCase(Locale.ROOT);
        int cl = lower.indexOf("\r\ncontent-length:");
        if (cl >= 0) {
            int n = Integer.parseInt(lower.substring(cl + 17, lower.indexOf("\r\n", cl + 2)).strip());
            in.readNBytes(n);
        } else if (lower.contains("\r\ntransfer-encoding: chunked")) {
            for (;;) {
                int size = Integer.parseInt(readLine(in).strip(), 16);
                in.readNBytes(size);
                readLine(in);
                if (size == 0) {
                    break;
                }
            }
        }
        return status;
    }

    private static String readHead(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        while (true) {
            int b = in.read();
            if (b < 0) {
                throw new IOException("connection closed after " + out);
            }
            out.write(b);
            byte[] a = out.toByteArray();
            int n = a.length;
            if (n >= 4 && a[n - 4] == '\r' && a[n - 3] == '\n' && a[n - 2] == '\r' && a[n - 1] == '\n') {
                return out.toString(StandardCharsets.US_ASCII);
            }
        }
    }

    private static String readLine(InputStream in) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        int b;
        while ((b = in.read()) >= 0 && b != '\n') {
            out.write(b);
        }
        return out.toString(StandardCharsets.US_ASCII);
    }

    @Test
    void everyRequestOnAKeptAliveConnectionIsAnswered() throws Exception {
        TestStores.write(StoreConfig.of(dir, TestStores.SHAPE, 64).withMinFreeBytes(0), "a", "b");
        List<List<String>> sequences = List.of(
                List.of("/manifest", "/nothing", "/nothing"),
                List.of("/requests/0.npy", "/nothing", "/nothing"),
                List.of("/requests/1.npy?dtype=int64", "/requests/0.npy?start=zz", "/requests/by-id/x.npy"),
                List.of("/requests", "/requests/9.npy", "/nothing"));
        try (ReplayServer server = ReplayServer.start(dir, "127.0.0.1", 0)) {
            for (List<String> sequence : sequences) {
                try (Socket socket = new Socket(InetAddress.getLoopbackAddress(), server.port())) {
                    socket.setSoTimeout(5000);
                    OutputStream out = socket.getOutputStream();
                    InputStream in = socket.getInputStream();
                    for (int i = 0; i < 200; i++) {
                        for (String uri : sequence) {
                            out.write(("GET " + uri + " HTTP/1.1\r\nHost: x\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
                            out.flush();
                            try {
                                int status = readResponse(in);
                                int want = uri.contains("zz") ? 400
                                        : uri.equals("/manifest") || uri.equals("/requests") || uri.matches("/requests/[01]\\.npy.*") ? 200 : 404;
                                assertEquals(want, status, uri);
                            } catch (SocketTimeoutException e) {
                                throw new AssertionError("no answer within 5 s to " + uri + " (round " + i + " of " + sequence + ")", e);
                            }
                        }
                    }
                }
            }
        }
    }
}
