package dev.routingreplay.examples;

import dev.routingreplay.core.RoutingShape;
import dev.routingreplay.core.memory.DeviceBuffer;
import dev.routingreplay.cuda.CudaBuffer;
import dev.routingreplay.cuda.CudaDevice;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The forward pass on the GPU: only a key and a position per token cross the bus; {@link CudaKeyedGate} computes the
 * routing on the compute stream, where the pipeline's pack kernel then reads it in stream order.
 */
final class CudaForwardPass extends ForwardPass {
    private final CudaKeyedGate gate;
    private final DeviceBuffer keysMemory;
    private final DeviceBuffer positionsMemory;
    private final ByteBuffer keysHost;
    private final ByteBuffer positionsHost;

    CudaForwardPass(CudaDevice gpu, RoutingShape shape, int maxTokens) {
        super(gpu, shape, maxTokens);
        this.gate = new CudaKeyedGate(gpu);
        this.keysMemory = gpu.allocate(maxTokens * 8L);
        this.positionsMemory = gpu.allocate(maxTokens * 4L);
        this.keysHost = ByteBuffer.allocateDirect(maxTokens * 8).order(ByteOrder.nativeOrder());
        this.positionsHost = ByteBuffer.allocateDirect(maxTokens * 4).order(ByteOrder.nativeOrder());
    }

    @Override
    void writeRouting(int tokens, long[] keys, int[] positions) {
        for (int t = 0; t < tokens; t++) {
            keysHost.putLong(t * 8, keys[t]);
            positionsHost.putInt(t * 4, positions[t]);
        }
        device.write(keysMemory, 0, keysHost.duplicate().position(0).limit(tokens * 8));
        device.write(positionsMemory, 0, positionsHost.duplicate().position(0).limit(tokens * 4));
        gate.launch((CudaBuffer) routingMemory, (CudaBuffer) keysMemory, (CudaBuffer) positionsMemory, tokens, shape);
    }

    @Override
    public void close() {
        super.close();
        keysMemory.close();
        positionsMemory.close();
        gate.close();
    }
}
