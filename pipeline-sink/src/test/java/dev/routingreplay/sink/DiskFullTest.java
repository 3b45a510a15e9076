package dev.routingreplay.sink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A disk that fills suddenly (issue 13 item 1): a writer on a 24 MiB tmpfs mounted by the test (in a mount namespace,
 * {@code unshare -rm}), filled by another thread mid-run. Skipped, with the reason printed, where the machine does not
 * permit the mount.
 */
class DiskFullTest {
    @TempDir
    Path tmp;

    @Test
    void aDiskFilledMidRunFailsThePipelineCleanlyAndEveryAcknowledgedRecordIsIntact() throws Exception {
        Path mount = Files.createDirectories(tmp.resolve("tmpfs"));
        List<String> cmd = new ArrayList<>(List.of("unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=24m tmpfs \"$0\" && exec \"$@\"",
                mount.toString(), "true"));
        Process probe = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String probeOut = new String(probe.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!probe.waitFor(20, TimeUnit.SECONDS) || probe.exitValue() != 0) {
            String reason = "skipped: this machine does not permit a tmpfs mount in `unshare -rm` (" + probeOut.strip() + ")";
            System.out.println(reason);
            Assumptions.abort(reason);
        }
        cmd.remove(cmd.size() - 1);
        cmd.addAll(CrashWriter.javaCommand(DiskFillWriter.class));
        cmd.add(mount.resolve("store").toString());
        Process writer = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        byte[][] out = new byte[1][];
        Thread drain = new Thread(() -> {
            try {
                out[0] = writer.getInputStream().readAllBytes();
            } catch (java.io.IOException e) {
                out[0] = new byte[0];
            }
        });
        drain.start();
        assertTrue(writer.waitFor(90, TimeUnit.SECONDS), "the writer exits instead of hanging");
        drain.join();
        String output = new String(out[0], StandardCharsets.UTF_8);
        assertEquals(0, writer.exitValue(), output);
        List<String> lines = output.lines().toList();
        assertTrue(lines.stream().anyMatch(l -> l.startsWith("FILLED ")), "the filler filled the tmpfs: " + output);
        String failed = lines.stream().filter(l -> l.startsWith("FAILED ")).findFirst().orElse(null);
        assertTrue(failed != null && failed.contains(": disk full: cannot allocate bytes ") && failed.contains(mount.resolve("store").toString()),
                "a clean disk-full error naming the file, before any byte of the excerpt was written: " + output);
        assertFalse(output.contains("InternalError") || output.contains("fatal error"), output);
        Set<String> acked = new TreeSet<>();
        Set<String> stored = new TreeSet<>();
        for (String l : lines) {
            if (l.startsWith("ACK ")) {
                acked.add(l.substring(4));
            } else if (l.startsWith("STORED ")) {
                stored.add(l.substring(7));
            }
        }
        assertTrue(acked.size() >= DiskFillWriter.FILL_AFTER, output);
        assertTrue(lines.contains("VERIFIED " + stored.size()), "every stored record read back intact on the full disk: " + output);
        assertTrue(stored.containsAll(acked), "every acknowledged request is stored: acked " + acked + ", stored " + stored);
        assertTrue(stored.size() <= acked.size() + 1, "at most the unacknowledged finish's record more: " + output);
    }
}
