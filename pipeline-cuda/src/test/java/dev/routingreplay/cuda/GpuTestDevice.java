package dev.routingreplay.cuda;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.ParameterContext;
import org.junit.jupiter.api.extension.ParameterResolver;

/**
 * How the GPU tests get their device, as a JUnit extension ({@code @ExtendWith(GpuTestDevice.class)}, then a
 * {@code CudaDevice} parameter on each test): the test class is skipped, with the reason, where CUDA is unavailable (CI
 * has no GPU; GPU runs go through the bundle, see docs/gpu.md); else it gets device 0, opened once for the class and
 * closed after it, with the completion strategy named by the system property {@value #COMPLETION_PROPERTY}
 * ({@code POLL} or {@code BLOCKING_SYNC}; default {@link CompletionStrategy#DEFAULT}).
 */
final class GpuTestDevice implements BeforeAllCallback, AfterAllCallback, ParameterResolver {
    private static final ExtensionContext.Namespace NAMESPACE = ExtensionContext.Namespace.create(GpuTestDevice.class);
    /** System property that picks the completion strategy of the GPU tests' device. */
    static final String COMPLETION_PROPERTY = "r3.gpu.completion";

    @Override
    public void beforeAll(ExtensionContext context) {
        assumeGpu(context.getRequiredTestClass());
        context.getStore(NAMESPACE).put(CudaDevice.class, open());
    }

    @Override
    public void afterAll(ExtensionContext context) {
        CudaDevice gpu = context.getStore(NAMESPACE).remove(CudaDevice.class, CudaDevice.class);
        if (gpu != null) {
            try {
                gpu.close();
            } catch (RuntimeException e) {
                // GpuErrorTest leaves the context failed on purpose: closing it reports that error again
                System.err.println("closing the GPU test device after " + context.getRequiredTestClass().getSimpleName() + ": " + e.getMessage());
            }
        }
    }

    @Override
    public boolean supportsParameter(ParameterContext parameter, ExtensionContext context) {
        return parameter.getParameter().getType() == CudaDevice.class;
    }

    @Override
    public Object resolveParameter(ParameterContext parameter, ExtensionContext context) {
        return context.getStore(NAMESPACE).get(CudaDevice.class, CudaDevice.class);
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
