package dev.routingreplay.examples;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.cuda.Cuda;
import dev.routingreplay.cuda.CudaBuffer;
import dev.routingreplay.cuda.CudaDevice;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import jcuda.Pointer;
import jcuda.driver.CUfunction;
import jcuda.driver.CUmodule;
import jcuda.driver.JCudaDriver;

/**
 * The simulated engine's gate on the GPU: the {@code r3_keyed_routing} kernel, which computes {@link ExpertRouting#mix}
 * for every (token, layer, k) from a 64-bit key and a position per token, so only those cross the bus. The kernel's
 * source sits beside the backend's in {@code pipeline-cuda/src/main/cuda/r3_kernels.cu} (one PTX, one hash check);
 * this class loads that PTX as its own module, so the backend's API knows nothing of the examples' routing.
 */
final class CudaKeyedGate implements AutoCloseable {
    /** Class-path location of the committed PTX that holds the kernel (shipped in pipeline-cuda's jar). */
    private static final String PTX_RESOURCE = "/dev/routingreplay/cuda/r3_kernels.ptx";

    private final CudaDevice gpu;
    private final CUmodule module = new CUmodule();
    private final CUfunction kernel = new CUfunction();

    /** Loads the kernel into {@code gpu}'s context. */
    CudaKeyedGate(CudaDevice gpu) {
        this.gpu = gpu;
        byte[] ptx = ptx();
        byte[] terminated = new byte[ptx.length + 1];
        System.arraycopy(ptx, 0, terminated, 0, ptx.length);
        gpu.bind();
        Cuda.check(JCudaDriver.cuModuleLoadData(module, terminated), "cuModuleLoadData(r3_kernels.ptx)");
        Cuda.check(JCudaDriver.cuModuleGetFunction(kernel, module, "r3_keyed_routing"), "cuModuleGetFunction(r3_keyed_routing)");
    }

    private static byte[] ptx() {
        try (InputStream in = CudaKeyedGate.class.getResourceAsStream(PTX_RESOURCE)) {
            if (in == null) {
                throw new IllegalStateException("PTX resource " + PTX_RESOURCE + " is missing from the class path (pipeline-cuda's jar)");
            }
            return in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /**
     * Launches the gate on the device's compute stream: int32 ids {@code [tokens, layers, topK]} into {@code out}, each
     * {@link ExpertRouting#mix} of the token's key ({@code keys}, int64 per token), its position ({@code positions},
     * int32 per token; -1 marks padding, which gets the invalid id {@code numExperts + 7}), the layer and k. Returns
     * without waiting.
     *
     * @throws IllegalArgumentException when a buffer is too small for {@code tokens}
     */
    void launch(CudaBuffer out, CudaBuffer keys, CudaBuffer positions, int tokens, RoutingShape shape) {
        if ((long) tokens * shape.idsPerRow() * 4 > out.byteSize() || tokens * 8L > keys.byteSize() || tokens * 4L > positions.byteSize()) {
            throw new IllegalArgumentException("buffers too small for " + tokens + " tokens of " + shape.describe());
        }
        if (tokens == 0) {
            return;
        }
        gpu.bind();
        Pointer params = Pointer.to(Pointer.to(out.pointer()), Pointer.to(keys.pointer()), Pointer.to(positions.pointer()),
                Pointer.to(new int[] {tokens}), Pointer.to(new int[] {shape.moeLayers()}), Pointer.to(new int[] {shape.topK()}),
                Pointer.to(new int[] {shape.numExperts()}));
        long threads = (long) tokens * shape.idsPerRow();
        int blocks = (int) Math.min((threads + 255) / 256, 132L * 16);
        Cuda.check(JCudaDriver.cuLaunchKernel(kernel, blocks, 1, 1, 256, 1, 1, 0, gpu.computeStream(), params, null),
                "cuLaunchKernel(r3_keyed_routing)");
    }

    /** Unloads the module; the device's compute stream must not run the kernel any more. */
    @Override
    public void close() {
        gpu.bind();
        JCudaDriver.cuModuleUnload(module);
    }
}
