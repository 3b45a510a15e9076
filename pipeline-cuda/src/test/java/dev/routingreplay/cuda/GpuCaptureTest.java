package dev.routingreplay.cuda;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * Runs the GPU self-test ({@link GpuSelfTest}) in a child JVM when a CUDA device is present; skipped, with the reason,
 * everywhere else (CI has no GPU: the GPU runs happen from the bundle, see docs/gpu.md).
 */
class GpuCaptureTest {
    @Test
    void gpuCaptureEqualsTheHostBackendAndErrorsSurface() throws Exception {
        String reason = Cuda.unavailableReason();
        if (reason != null) {
            // shown in the build log: surefire does not print assumption messages
            System.err.println("GpuCaptureTest skipped: " + reason + ". GPU runs: docs/gpu.md");
        }
        Assumptions.assumeTrue(reason == null, "GPU tests skipped: " + reason);
        List<String> cmd = new ArrayList<>();
        cmd.add(ProcessHandle.current().info().command().orElse("java"));
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add(GpuSelfTest.class.getName());
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        p.waitFor(10, TimeUnit.MINUTES);
        assertEquals(0, p.exitValue(), out);
    }
}
