package dev.routingreplay.cuda;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

class CudaAvailabilityTest {
    @Test
    void withoutAGpuOpeningSaysSoInOneLineAndPointsToTheHostBackend() {
        String reason = Cuda.unavailableReason();
        Assumptions.assumeTrue(reason != null, "this machine has a CUDA device; the no-GPU message cannot be checked here");
        CudaException e = assertThrows(CudaException.class, () -> CudaDevice.open(0));
        assertTrue(e.getMessage().contains("--backend host"), e.getMessage());
        assertTrue(!e.getMessage().contains("\n"), "one line: " + e.getMessage());
    }

    @Test
    void aFailedCallNamesTheCallAndTheCode() {
        CudaException e = assertThrows(CudaException.class, () -> Cuda.check(700, "cuMemcpyDtoHAsync(rows)"));
        assertTrue(e.getMessage().equals("cuMemcpyDtoHAsync(rows) failed: CUDA_ERROR_ILLEGAL_ADDRESS (700)"), e.getMessage());
    }
}
