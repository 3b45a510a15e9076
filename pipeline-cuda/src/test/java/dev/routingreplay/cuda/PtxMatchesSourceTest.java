package dev.routingreplay.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

class PtxMatchesSourceTest {
    private static final Path SOURCE = Path.of("src/main/cuda/r3_kernels.cu");

    @Test
    void theCommittedPtxWasBuiltFromTheCommittedSource() throws Exception {
        String actual = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(SOURCE)));
        assertEquals(actual, CudaKernels.sourceSha256(), "r3_kernels.cu changed since the PTX was built: run pipeline-cuda/build-ptx.sh");
        String ptx = new String(CudaKernels.ptx(), StandardCharsets.US_ASCII);
        assertTrue(ptx.contains(".visible .entry r3_pack(") && ptx.contains(".visible .entry r3_gate("), "both kernels are in the PTX");
    }

    @Test
    void nvccStillProducesTheCommittedPtx() throws IOException, InterruptedException {
        Assumptions.assumeTrue(onPath("nvcc"), "nvcc is not installed here; the source hash check above still runs");
        Path out = Files.createTempFile("r3", ".ptx");
        Process p = new ProcessBuilder("nvcc", "--ptx", "-arch=compute_90", "-O3", "-o", out.toString(), SOURCE.toString())
                .redirectErrorStream(true).start();
        String log = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(p.waitFor(120, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), log);
        String committed = new String(CudaKernels.ptx(), StandardCharsets.US_ASCII);
        String body = committed.substring(committed.indexOf('\n') + 1);
        assertEquals(stripVersionLines(Files.readString(out)), stripVersionLines(body), "committed PTX differs from nvcc's output");
        Files.delete(out);
    }

    private static String stripVersionLines(String ptx) {
        StringBuilder sb = new StringBuilder();
        for (String line : ptx.split("\n")) {
            if (!line.startsWith("// Compiler Build ID") && !line.startsWith("// Cuda compilation tools") && !line.startsWith("// Based on NVVM")) {
                sb.append(line).append('\n');
            }
        }
        return sb.toString();
    }

    private static boolean onPath(String command) {
        for (String dir : System.getenv().getOrDefault("PATH", "").split(":")) {
            if (Files.isExecutable(Path.of(dir, command))) {
                return true;
            }
        }
        return false;
    }
}
