package dev.routingreplay.cuda;

import org.junit.jupiter.api.Assumptions;

/**
 * How the GPU tests get their device: skipped, with the reason, where CUDA is unavailable (CI has no GPU; GPU runs go
 * through the bundle, see docs/gpu.md); else device 0 with the completion strategy named by the system property
 * {@value #COMPLETION_PROPERTY} ({@code POLL} or {@code BLOCKING_SYNC}; default {@link CompletionStrategy#DEFAULT}).
 */
final class GpuTestDevice {
    /** System property that picks the completion strategy of the GPU tests' device. */
    static final String COMPLETION_PROPERTY = "r3.gpu.completion";

    private GpuTestDevice() {
    }

    /** Aborts the calling test (or class, from {@code @BeforeAll}) as skipped when there is no usable CUDA device. */
    static void assumeGpu(Class<?> test) {
        String reason = Cuda.unavailableReason();
        if (reason != null) {
            // shown in the build log: surefire does not print assumption messages
            System.err.println(test.getSimpleName() + " skipped: " + reason + ". GPU runs: docs/gpu.md");
        }
        Assumptions.assumeTrue(reason == null, "GPU tests skipped: " + reason);
    }

    /** Opens device 0 with the completion strategy the tests run with. */
    static CudaDevice open() {
        String name = System.getProperty(COMPLETION_PROPERTY);
        CudaDevice gpu = CudaDevice.open(0, name == null ? CompletionStrategy.DEFAULT : CompletionStrategy.valueOf(name));
        System.out.println("device: " + gpu.name() + ", completion " + gpu.completion());
        return gpu;
    }
}
