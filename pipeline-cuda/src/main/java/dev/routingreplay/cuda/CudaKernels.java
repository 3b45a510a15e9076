package dev.routingreplay.cuda;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import jcuda.driver.CUfunction;
import jcuda.driver.CUmodule;
import jcuda.driver.JCudaDriver;

/**
 * The backend's kernels of {@code r3_kernels.cu} (pack and the synthetic gate), loaded from the committed PTX with
 * {@code cuModuleLoadData}. The module also holds the examples' keyed-routing gate, which the examples load themselves.
 */
final class CudaKernels {
    /** Class-path location of the committed PTX. */
    static final String PTX_RESOURCE = "/dev/routingreplay/cuda/r3_kernels.ptx";

    final CUmodule module = new CUmodule();
    final CUfunction pack = new CUfunction();
    final CUfunction gate = new CUfunction();

    CudaKernels() {
        byte[] ptx = ptx();
        byte[] terminated = new byte[ptx.length + 1];
        System.arraycopy(ptx, 0, terminated, 0, ptx.length);
        Cuda.check(JCudaDriver.cuModuleLoadData(module, terminated), "cuModuleLoadData(r3_kernels.ptx)");
        Cuda.check(JCudaDriver.cuModuleGetFunction(pack, module, "r3_pack"), "cuModuleGetFunction(r3_pack)");
        Cuda.check(JCudaDriver.cuModuleGetFunction(gate, module, "r3_gate"), "cuModuleGetFunction(r3_gate)");
    }

    static byte[] ptx() {
        try (InputStream in = CudaKernels.class.getResourceAsStream(PTX_RESOURCE)) {
            if (in == null) {
                throw new IllegalStateException("PTX resource " + PTX_RESOURCE + " is missing; run pipeline-cuda/build-ptx.sh");
            }
            return in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** The SHA-256 of the .cu source the committed PTX was built from (its first line). */
    static String sourceSha256() {
        String text = new String(ptx(), StandardCharsets.US_ASCII);
        String first = text.substring(0, text.indexOf('\n'));
        String prefix = "// r3-source-sha256: ";
        if (!first.startsWith(prefix)) {
            throw new IllegalStateException("PTX resource lacks its source hash line; rebuild it with build-ptx.sh");
        }
        return first.substring(prefix.length()).trim();
    }

    void unload() {
        JCudaDriver.cuModuleUnload(module);
    }
}
